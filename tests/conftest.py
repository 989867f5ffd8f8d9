"""Shared test setup: CPU conv kernel choices go to a file of this test session, never to
the user's cache (a remembered choice would also skip the timing some tests count)."""
import pytest

from densebox.ops.conv import ENV_CPU_CONV_CACHE


@pytest.fixture(autouse=True, scope='session')
def _private_cpu_conv_choices(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_CPU_CONV_CACHE, str(tmp_path_factory.mktemp('cpu_conv') / 'choices.json'))
        yield
