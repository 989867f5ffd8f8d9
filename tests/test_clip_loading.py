"""CLIP from open_clip with weights from local files: TorchScript archives (OpenAI's
format) read without running them, open_clip / safetensors checkpoints, zoo names, and the
errors for missing or mismatched files. All on a tiny random CLIP made here."""
import os
import pickle
import zipfile

import open_clip
import pytest
import torch

from densebox import zoo
from densebox.engine.checkpoint import UnsafeCheckpointError, safe_torch_load
from densebox.engine.torchscript_weights import (is_torchscript_archive,
                                                 load_torchscript_state_dict)
from densebox.models.backbones.clip import (build_clip, clip_tokenizer, load_clip_state_dict,
                                            resolve_clip_weights)

TINY_RN = dict(embed_dim=32,
               vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=16, patch_size=None),
               text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))
TINY_VIT = dict(embed_dim=32,
                vision_cfg=dict(image_size=32, layers=2, width=32, patch_size=8, head_width=16),
                text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))


def _inputs(cfg):
    torch.manual_seed(1)
    size = cfg['vision_cfg']['image_size']
    images = torch.randn(2, 3, size, size)
    texts = clip_tokenizer(context_length=cfg['text_cfg']['context_length'])(
        ['a photo of a dog', 'a red square'])
    return images, texts


def _encode(model, images, texts):
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(texts)


@pytest.fixture(scope='module', params=['rn', 'vit'])
def traced(request, tmp_path_factory):
    """A tiny open_clip CLIP saved as OpenAI does (a traced TorchScript archive, QuickGELU,
    float16 linear and conv weights)."""
    cfg = TINY_RN if request.param == 'rn' else TINY_VIT
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg, quick_gelu=True).eval()
    open_clip.model.convert_weights_to_lp(model, dtype=torch.float16)
    model.float()  # the trace runs in float32; the archive keeps the float16-rounded values
    images, texts = _inputs(cfg)
    path = tmp_path_factory.mktemp('ts') / f'{request.param}.pt'
    torch.jit.trace(model, (images, texts), check_trace=False).save(str(path))
    return cfg, model, str(path)


def test_torchscript_state_dict_equals_jit_load(traced):
    _, _, path = traced
    assert is_torchscript_archive(path)
    reference = torch.jit.load(path).state_dict()  # the oracle: torch's own reader
    state = load_torchscript_state_dict(path)
    assert list(state) == list(reference)
    for key, value in reference.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    assert safe_torch_load(path).keys() == state.keys()  # every densebox load path reads it


def test_build_clip_from_torchscript_computes_what_the_source_computes(traced):
    cfg, source, path = traced
    model = build_clip(model_cfg=cfg, checkpoint=path).eval()
    assert model.visual is not None and all(p.dtype == torch.float32 for p in model.parameters())
    images, texts = _inputs(cfg)
    for got, want in zip(_encode(model, images, texts), _encode(source, images, texts)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_quick_gelu_follows_the_weights_format(traced, tmp_path):
    """OpenAI's archives mean QuickGELU; a plain state dict means open_clip's default GELU
    unless asked for."""
    cfg, source, path = traced
    gelu_kinds = lambda m: {type(x).__name__ for x in m.modules()} & {'QuickGELU', 'GELU'}
    assert gelu_kinds(build_clip(model_cfg=cfg, checkpoint=path)) == {'QuickGELU'}
    plain = tmp_path / 'plain.pt'
    torch.save(source.state_dict(), plain)
    assert gelu_kinds(build_clip(model_cfg=cfg, checkpoint=str(plain))) == {'GELU'}
    assert gelu_kinds(build_clip(model_cfg=cfg, checkpoint=str(plain), quick_gelu=True)) \
        == {'QuickGELU'}


def test_open_clip_and_safetensors_checkpoints(tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    source = open_clip.CLIP(**TINY_RN).eval()
    state = source.state_dict()
    wrapped = tmp_path / 'epoch_1.pt'  # open_clip's training checkpoints: DDP prefix, wrapper
    torch.save({'epoch': 1, 'state_dict': {f'module.{k}': v for k, v in state.items()}}, wrapped)
    tensors = tmp_path / 'open_clip_model.safetensors'
    save_file({k: v.contiguous() for k, v in state.items()}, str(tensors))
    images, texts = _inputs(TINY_RN)
    want = _encode(source, images, texts)
    for path in (wrapped, tensors):
        assert load_clip_state_dict(str(path)).keys() == state.keys()
        got = _encode(build_clip(model_cfg=TINY_RN, checkpoint=str(path)).eval(), images, texts)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_a_crafted_archive_never_runs(traced, tmp_path):
    """A TorchScript archive whose data.pkl would call os.system is refused without running
    it, through every densebox entry point."""
    _, _, path = traced
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    crafted = tmp_path / 'crafted.pt'
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(crafted, 'w') as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith('/data.pkl'):
                data = pickle.dumps({'weight': Payload()}, protocol=2)
            dst.writestr(item, data)
    assert is_torchscript_archive(crafted)
    for load in (load_torchscript_state_dict, safe_torch_load, load_clip_state_dict,
                 lambda p: build_clip(model_cfg=TINY_RN, checkpoint=str(p))):
        with pytest.raises((pickle.UnpicklingError, UnsafeCheckpointError),
                           match='refuses to read it'):
            load(str(crafted))
        assert not marker.exists()


def test_mismatched_weights_name_the_keys(traced):
    _, _, path = traced
    other = dict(TINY_RN, embed_dim=48) if traced[0] is TINY_RN else dict(TINY_VIT, embed_dim=48)
    with pytest.raises(RuntimeError, match=r'does not fit.*shape mismatches \[.*text_projection'):
        build_clip(model_cfg=other, checkpoint=path)


def test_missing_weights_name_the_file_and_the_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path / 'home'))
    monkeypatch.delenv('DENSEBOX_ALLOW_DOWNLOAD', raising=False)
    with pytest.raises(FileNotFoundError, match=r'no_such\.pt not found.*clip_rn50_openai'):
        build_clip('RN50', checkpoint=str(tmp_path / 'no_such.pt'))
    expected = os.path.join(zoo.cache_dir(), 'downloads', 'RN50.pt')
    with pytest.raises(FileNotFoundError, match=r'not in the cache \(' + expected):
        resolve_clip_weights('clip_rn50_openai')
    with pytest.raises(KeyError, match='not an open_clip model name'):
        build_clip('RN51')


def test_zoo_name_resolves_from_the_cache(traced, tmp_path, monkeypatch):
    """A clip zoo entry is looked up in the cache's downloads folder and hash-checked; its
    converter gives open_clip's float32 state dict."""
    import hashlib
    import shutil
    cfg, source, path = traced
    monkeypatch.setenv('DENSEBOX_HOME', str(tmp_path / 'home'))
    digest = hashlib.sha256(open(path, 'rb').read()).hexdigest()
    saved = dict(zoo.MANIFEST)
    try:
        zoo.register_model('clip_tiny', kind='clip', open_clip_name=None,
                           url=f'https://example.invalid/{digest}/tiny.pt', sha256=digest,
                           converter='clip_state_dict')
        cached = os.path.join(zoo.cache_dir(), 'downloads', 'tiny.pt')
        os.makedirs(os.path.dirname(cached))
        shutil.copy(path, cached)
        assert resolve_clip_weights('clip_tiny') == cached
        assert resolve_clip_weights('zoo://clip_tiny') == cached
        converted = safe_torch_load(zoo.get_checkpoint('clip_tiny'))['state_dict']
        assert all(v.dtype != torch.float16 for v in converted.values())
        model = build_clip(model_cfg=cfg, checkpoint=zoo.get_checkpoint('clip_tiny'),
                           quick_gelu=True).eval()
        images, texts = _inputs(cfg)
        for g, w in zip(_encode(model, images, texts), _encode(source, images, texts)):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
    finally:
        zoo.MANIFEST.clear()
        zoo.MANIFEST.update(saved)
