"""Shared test setup: CPU conv kernel choices go to a file of this test session, never to
the user's cache (a remembered choice would also skip the timing some tests count)."""
import pytest

from densebox.ops.conv import ENV_CPU_CONV_CACHE


@pytest.fixture(autouse=True, scope='session')
def _private_cpu_conv_choices(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_CPU_CONV_CACHE, str(tmp_path_factory.mktemp('cpu_conv') / 'choices.json'))
        yield


def pytest_collection_modifyitems(config, items):
    """Tests that load OpenVINO (marked ``openvino``) run last, in their collected order.

    Seen on the 2-core machine (OpenVINO 2026.4, torch 2.14.1): after a few OpenVINO
    compiles in the process, the SSD300 training test of tests/test_e2e_det.py died of a
    SIGSEGV delivered while the main thread waited in poll() on a subprocess (reproduce:
    ``pytest tests/test_deploy_runtime.py tests/test_e2e_det.py -k "openvino or save or voc
    or missing"``). Each test passes alone and with only its OpenVINO neighbour."""
    items.sort(key=lambda item: item.get_closest_marker('openvino') is not None)
