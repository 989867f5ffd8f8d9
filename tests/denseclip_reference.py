"""The official DenseCLIP segmentor (raoyongming/DenseCLIP, segmentation/denseclip/, with
mmseg 0.x's FPN and FPNHead), restated as plain functions over its state dict: the key
names and shapes it has (:func:`official_state_shapes`) and what it computes in eval mode
(:func:`official_forward`). Written from the official definitions for the converter tests;
nothing here uses densebox or open_clip modules.
"""
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------ key layout


def _bn(prefix, c):
    return {f'{prefix}.weight': (c,), f'{prefix}.bias': (c,), f'{prefix}.running_mean': (c,),
            f'{prefix}.running_var': (c,), f'{prefix}.num_batches_tracked': ()}


def _ln(prefix, c):
    return {f'{prefix}.weight': (c,), f'{prefix}.bias': (c,)}


def _linear(prefix, c_in, c_out, bias=True):
    out = {f'{prefix}.weight': (c_out, c_in)}
    if bias:
        out[f'{prefix}.bias'] = (c_out,)
    return out


def _clip_block(prefix, c):
    """models.py ResidualAttentionBlock: nn.MultiheadAttention + ln + c_fc / c_proj MLP."""
    out = {f'{prefix}.attn.in_proj_weight': (3 * c, c), f'{prefix}.attn.in_proj_bias': (3 * c,)}
    out.update(_linear(f'{prefix}.attn.out_proj', c, c))
    out.update(_ln(f'{prefix}.ln_1', c))
    out.update(_linear(f'{prefix}.mlp.c_fc', c, 4 * c))
    out.update(_linear(f'{prefix}.mlp.c_proj', 4 * c, c))
    out.update(_ln(f'{prefix}.ln_2', c))
    return out


def resnet_shapes(width, layers, output_dim, input_resolution):
    """CLIPResNetWithAttention's ``backbone.*`` keys."""
    s = OrderedDict()
    s['backbone.conv1.weight'] = (width // 2, 3, 3, 3)
    s.update(_bn('backbone.bn1', width // 2))
    s['backbone.conv2.weight'] = (width // 2, width // 2, 3, 3)
    s.update(_bn('backbone.bn2', width // 2))
    s['backbone.conv3.weight'] = (width, width // 2, 3, 3)
    s.update(_bn('backbone.bn3', width))
    inplanes = width
    for li, blocks in enumerate(layers):
        planes = width * 2 ** li
        for bi in range(blocks):
            p = f'backbone.layer{li + 1}.{bi}'
            stride = 2 if (li > 0 and bi == 0) else 1
            s[f'{p}.conv1.weight'] = (planes, inplanes, 1, 1)
            s.update(_bn(f'{p}.bn1', planes))
            s[f'{p}.conv2.weight'] = (planes, planes, 3, 3)
            s.update(_bn(f'{p}.bn2', planes))
            s[f'{p}.conv3.weight'] = (planes * 4, planes, 1, 1)
            s.update(_bn(f'{p}.bn3', planes * 4))
            if stride > 1 or inplanes != planes * 4:
                s[f'{p}.downsample.0.weight'] = (planes * 4, inplanes, 1, 1)
                s.update(_bn(f'{p}.downsample.1', planes * 4))
            inplanes = planes * 4
    embed = width * 32
    s['backbone.attnpool.positional_embedding'] = ((input_resolution // 32) ** 2 + 1, embed)
    for name in ('k_proj', 'q_proj', 'v_proj'):
        s.update(_linear(f'backbone.attnpool.{name}', embed, embed))
    s.update(_linear('backbone.attnpool.c_proj', embed, output_dim))
    return s


def vit_shapes(width, layers, patch, output_dim, input_resolution):
    """CLIPVisionTransformer's ``backbone.*`` keys (patch 16, get_embeddings=True)."""
    s = OrderedDict()
    s['backbone.conv1.weight'] = (width, 3, patch, patch)
    s['backbone.class_embedding'] = (width,)
    s['backbone.positional_embedding'] = ((input_resolution // patch) ** 2 + 1, width)
    s.update(_ln('backbone.ln_pre', width))
    for i in range(layers):
        s.update(_clip_block(f'backbone.transformer.resblocks.{i}', width))
    s.update(_ln('backbone.ln_post', width))
    s['backbone.proj'] = (width, output_dim)

    def deconv(p):
        return {f'{p}.weight': (width, width, 2, 2), f'{p}.bias': (width,)}

    s.update(_ln('backbone.fpn1.0', width))
    s.update(deconv('backbone.fpn1.1'))
    s.update(_bn('backbone.fpn1.2', width))
    s.update(deconv('backbone.fpn1.4'))
    s.update(_ln('backbone.fpn2.0', width))
    s.update(deconv('backbone.fpn2.1'))
    s.update(_ln('backbone.fpn3', width))
    s.update(_ln('backbone.fpn4.0', width))
    return s


def official_state_shapes(backbone, text, decoder, num_classes, fpn_in, fpn_out=256,
                          head_channels=256):
    """Every key of an official DenseCLIP + Semantic FPN state dict with its shape.

    backbone: ``('rn', width, layers, output_dim, input_resolution)`` or
    ``('vit', width, layers, patch, output_dim, input_resolution)``; text:
    ``(width, layers, vocab, context_length, embed_dim)``; decoder: ``(visual_dim, width,
    layers)``; fpn_in: the FPN's input channels (score map included).
    """
    s = resnet_shapes(*backbone[1:]) if backbone[0] == 'rn' else vit_shapes(*backbone[1:])
    t_width, t_layers, vocab, ctx_len, embed = text
    for i in range(t_layers):
        s.update(_clip_block(f'text_encoder.transformer.resblocks.{i}', t_width))
    s['text_encoder.token_embedding.weight'] = (vocab, t_width)
    s['text_encoder.positional_embedding'] = (ctx_len, t_width)
    s.update(_ln('text_encoder.ln_final', t_width))
    s['text_encoder.text_projection'] = (t_width, embed)
    v_dim, d_width, d_layers = decoder
    s.update(_ln('context_decoder.memory_proj.0', v_dim))
    s.update(_linear('context_decoder.memory_proj.1', v_dim, d_width))
    s.update(_ln('context_decoder.memory_proj.2', d_width))
    s.update(_ln('context_decoder.text_proj.0', v_dim))
    s.update(_linear('context_decoder.text_proj.1', v_dim, d_width))
    for i in range(d_layers):
        p = f'context_decoder.decoder.{i}'
        for attn in ('self_attn', 'cross_attn'):
            for name in ('q_proj', 'k_proj', 'v_proj'):
                s.update(_linear(f'{p}.{attn}.{name}', d_width, d_width, bias=False))
            s.update(_linear(f'{p}.{attn}.proj', d_width, d_width))
        for n in ('norm1', 'norm2', 'norm3'):
            s.update(_ln(f'{p}.{n}', d_width))
        s.update(_linear(f'{p}.mlp.0', d_width, 4 * d_width))
        s.update(_linear(f'{p}.mlp.3', 4 * d_width, d_width))
    s.update(_ln('context_decoder.out_proj.0', d_width))
    s.update(_linear('context_decoder.out_proj.1', d_width, v_dim))
    for i, c in enumerate(fpn_in):  # mmseg FPN: ConvModule(bias) laterals and 3x3 outputs
        s[f'neck.lateral_convs.{i}.conv.weight'] = (fpn_out, c, 1, 1)
        s[f'neck.lateral_convs.{i}.conv.bias'] = (fpn_out,)
        s[f'neck.fpn_convs.{i}.conv.weight'] = (fpn_out, fpn_out, 3, 3)
        s[f'neck.fpn_convs.{i}.conv.bias'] = (fpn_out,)
    for i, stride in enumerate((4, 8, 16, 32)):  # mmseg FPNHead scale heads
        for k in range(max(1, int(math.log2(stride // 4)))):
            j = 2 * k if stride != 4 else k
            c_in = fpn_out if k == 0 else head_channels
            s[f'decode_head.scale_heads.{i}.{j}.conv.weight'] = (head_channels, c_in, 3, 3)
            s.update(_bn(f'decode_head.scale_heads.{i}.{j}.bn', head_channels))
    s['decode_head.conv_seg.weight'] = (num_classes, head_channels, 1, 1)
    s['decode_head.conv_seg.bias'] = (num_classes,)
    s['contexts'] = (1, ctx_len - 5, t_width)
    s['gamma'] = (embed,)
    return s


def random_state(shapes, seed=0, dtype=torch.float64):
    """Random values for a key layout: weights ~ N(0, 1 / fan_in), embeddings ~ N(0, 0.1),
    norm weights near 1, biases near 0, BN running variances in [0.5, 1.5], the contexts
    ~ N(0, 1) (as initialised), gamma 0.1 (so the context decoder's output matters)."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in shapes.items():
        randn = torch.randn(shape, generator=g, dtype=torch.float64)
        if key.endswith('num_batches_tracked'):
            value = torch.tensor(7)
        elif key.endswith('running_var'):
            value = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
        elif key == 'gamma':
            value = torch.full(shape, 0.1, dtype=torch.float64)
        elif key == 'contexts':
            value = randn
        elif key.endswith(('embedding', 'embedding.weight')):
            value = 0.1 * randn
        elif len(shape) == 1:
            value = (1 + 0.1 * randn) if key.endswith('.weight') else 0.1 * randn
        elif key.endswith(('proj', 'text_projection')):   # used as x @ W: (in, out)
            value = randn / math.sqrt(shape[0])
        else:                                              # (out, in[, kh, kw])
            value = randn / math.sqrt(math.prod(shape[1:]))
        state[key] = value if key.endswith('num_batches_tracked') else value.to(dtype)
    return state


# ------------------------------------------------------------------------------ arithmetic
def _conv(x, sd, p, stride=1, padding=0):
    return F.conv2d(x, sd[f'{p}.weight'], sd.get(f'{p}.bias'), stride, padding)


def _bn_eval(x, sd, p):
    return F.batch_norm(x, sd[f'{p}.running_mean'], sd[f'{p}.running_var'], sd[f'{p}.weight'],
                        sd[f'{p}.bias'], False, 0.0, 1e-5)


def _linear_fn(x, sd, p):
    return F.linear(x, sd[f'{p}.weight'], sd.get(f'{p}.bias'))


def _layer_norm(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[f'{p}.weight'], sd[f'{p}.bias'], 1e-5)


def _heads_attention(q, k, v, heads, mask=None):
    """q (B, N, C), k / v (B, M, C) -> (B, N, C): per-head softmax(q k^T / sqrt(d)) v."""
    B, N, C = q.shape
    M = k.shape[1]
    d = C // heads
    q = q.reshape(B, N, heads, d).permute(0, 2, 1, 3)
    k = k.reshape(B, M, heads, d).permute(0, 2, 1, 3)
    v = v.reshape(B, M, heads, d).permute(0, 2, 1, 3)
    scores = torch.einsum('bhnd,bhmd->bhnm', q, k) / math.sqrt(d)
    if mask is not None:
        scores = scores + mask
    out = torch.einsum('bhnm,bhmd->bhnd', scores.softmax(-1), v)
    return out.permute(0, 2, 1, 3).reshape(B, N, C)


def _resize_pos(pos, h, w):
    side = int(round(math.sqrt(pos.shape[0] - 1)))
    spatial = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=(h, w), mode='bilinear')
    return pos[:1], spatial.reshape(pos.shape[1], h * w).t()


def resnet_forward(sd, x, layers, heads):
    """CLIPResNetWithAttention: C2..C5 and the attention pool's (global, dense)."""
    p = 'backbone'
    for i in (1, 2, 3):
        x = F.relu(_bn_eval(_conv(x, sd, f'{p}.conv{i}', 2 if i == 1 else 1, 1), sd, f'{p}.bn{i}'))
    x = F.avg_pool2d(x, 2)
    outs = []
    for li, blocks in enumerate(layers):
        for bi in range(blocks):
            b = f'{p}.layer{li + 1}.{bi}'
            stride = 2 if (li > 0 and bi == 0) else 1
            out = F.relu(_bn_eval(_conv(x, sd, f'{b}.conv1'), sd, f'{b}.bn1'))
            out = F.relu(_bn_eval(_conv(out, sd, f'{b}.conv2', padding=1), sd, f'{b}.bn2'))
            if stride > 1:
                out = F.avg_pool2d(out, stride)
            out = _bn_eval(_conv(out, sd, f'{b}.conv3'), sd, f'{b}.bn3')
            identity = x
            if f'{b}.downsample.0.weight' in sd:
                identity = F.avg_pool2d(x, stride) if stride > 1 else x
                identity = _bn_eval(_conv(identity, sd, f'{b}.downsample.0'), sd,
                                    f'{b}.downsample.1')
            x = F.relu(out + identity)
        outs.append(x)
    # attention pool over the mean token and every position
    B, C, H, W = x.shape
    t = x.reshape(B, C, H * W).permute(0, 2, 1)
    t = torch.cat([t.mean(1, keepdim=True), t], 1)
    cls_pos, spatial_pos = _resize_pos(sd[f'{p}.attnpool.positional_embedding'], H, W)
    t = t + torch.cat([cls_pos, spatial_pos])[None]
    q, k, v = (_linear_fn(t, sd, f'{p}.attnpool.{n}') for n in ('q_proj', 'k_proj', 'v_proj'))
    out = _linear_fn(_heads_attention(q, k, v, heads), sd, f'{p}.attnpool.c_proj')
    return outs, (out[:, 0], out[:, 1:].permute(0, 2, 1).reshape(B, -1, H, W))


def _clip_block_forward(x, sd, p, heads, mask=None):
    """ResidualAttentionBlock (QuickGELU) on (B, N, C)."""
    C = x.shape[-1]
    y = _layer_norm(x, sd, f'{p}.ln_1')
    qkv = F.linear(y, sd[f'{p}.attn.in_proj_weight'], sd[f'{p}.attn.in_proj_bias'])
    q, k, v = qkv.split(C, -1)
    x = x + _linear_fn(_heads_attention(q, k, v, heads, mask), sd, f'{p}.attn.out_proj')
    y = _linear_fn(_layer_norm(x, sd, f'{p}.ln_2'), sd, f'{p}.mlp.c_fc')
    y = y * torch.sigmoid(1.702 * y)                              # QuickGELU
    return x + _linear_fn(y, sd, f'{p}.mlp.c_proj')


def vit_forward(sd, x, layers, heads, out_indices):
    """CLIPVisionTransformer (patch 16, get_embeddings): four levels and (global, dense)."""
    p = 'backbone'
    patch = sd[f'{p}.conv1.weight'].shape[-1]
    x = F.conv2d(x, sd[f'{p}.conv1.weight'], stride=patch)
    B, C, H, W = x.shape
    x = x.reshape(B, C, H * W).permute(0, 2, 1)
    cls_emb = sd[f'{p}.class_embedding']
    x = torch.cat([cls_emb + torch.zeros(B, 1, C, dtype=x.dtype), x], 1)
    cls_pos, spatial_pos = _resize_pos(sd[f'{p}.positional_embedding'], H, W)
    x = x + torch.cat([cls_pos + cls_emb, spatial_pos])[None]   # the class embedding twice
    x = _layer_norm(x, sd, f'{p}.ln_pre')
    feats = []
    for i in range(layers):
        x = _clip_block_forward(x, sd, f'{p}.transformer.resblocks.{i}', heads)
        if i in out_indices:
            feats.append(x[:, 1:].permute(0, 2, 1).reshape(B, C, H, W))

    def gn(z, n):
        return F.group_norm(z, 1, sd[f'{p}.{n}.weight'], sd[f'{p}.{n}.bias'], 1e-5)

    def up(z, n):
        return F.conv_transpose2d(z, sd[f'{p}.{n}.weight'], sd[f'{p}.{n}.bias'], 2)

    f1 = up(F.gelu(_bn_eval(up(gn(feats[0], 'fpn1.0'), 'fpn1.1'), sd, f'{p}.fpn1.2')), 'fpn1.4')
    f2 = up(gn(feats[1], 'fpn2.0'), 'fpn2.1')
    f3 = gn(feats[2], 'fpn3')
    f4 = F.max_pool2d(gn(feats[3], 'fpn4.0'), 2, 2)
    x = _layer_norm(x, sd, f'{p}.ln_post') @ sd[f'{p}.proj']
    return [f1, f2, f3, f4], (x[:, 0], x[:, 1:].permute(0, 2, 1).reshape(B, -1, H, W))


def text_forward(sd, tokens, heads, layers):
    """CLIPTextContextEncoder(tokens (K, L), contexts (1, N, C)) -> (1, K, D)."""
    p = 'text_encoder'
    contexts = sd['contexts']
    K, L = tokens.shape
    N = contexts.shape[1]
    emb = sd[f'{p}.token_embedding.weight'][tokens]                 # (K, L, C)
    x = torch.cat([emb[:, :1], contexts.expand(K, -1, -1), emb[:, 1:]], 1)
    x = x + sd[f'{p}.positional_embedding']
    n = L + N
    mask = torch.full((n, n), float('-inf'), dtype=x.dtype).triu(1)
    for i in range(layers):
        x = _clip_block_forward(x, sd, f'{p}.transformer.resblocks.{i}', heads, mask)
    x = _layer_norm(x, sd, f'{p}.ln_final')
    x = x[torch.arange(K), tokens.argmax(-1) + N] @ sd[f'{p}.text_projection']
    return x[None]


def context_decoder_forward(sd, text, visual, heads, layers):
    """ContextDecoder (eval): text (B, K, D), visual (B, M, D) -> (B, K, D)."""
    p = 'context_decoder'

    def lin(z, n):
        return _linear_fn(z, sd, f'{p}.{n}')

    def attention(a, q, kv):
        return lin(_heads_attention(lin(q, f'{a}.q_proj'), lin(kv, f'{a}.k_proj'),
                                    lin(kv, f'{a}.v_proj'), heads), f'{a}.proj')

    mem = _layer_norm(lin(_layer_norm(visual, sd, f'{p}.memory_proj.0'), 'memory_proj.1'),
                      sd, f'{p}.memory_proj.2')
    x = lin(_layer_norm(text, sd, f'{p}.text_proj.0'), 'text_proj.1')
    for i in range(layers):
        d = f'decoder.{i}'
        y = _layer_norm(x, sd, f'{p}.{d}.norm1')
        x = x + attention(f'{d}.self_attn', y, y)
        x = x + attention(f'{d}.cross_attn', _layer_norm(x, sd, f'{p}.{d}.norm2'), mem)
        y = F.gelu(lin(_layer_norm(x, sd, f'{p}.{d}.norm3'), f'{d}.mlp.0'))
        x = x + lin(y, f'{d}.mlp.3')
    return lin(_layer_norm(x, sd, f'{p}.out_proj.0'), 'out_proj.1')


def fpn_forward(sd, levels):
    """mmseg FPN (no norm, nearest top-down)."""
    lat = [_conv(x, sd, f'neck.lateral_convs.{i}.conv') for i, x in enumerate(levels)]
    for i in range(len(lat) - 1, 0, -1):
        lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode='nearest')
    return [_conv(x, sd, f'neck.fpn_convs.{i}.conv', padding=1) for i, x in enumerate(lat)]


def fpn_head_forward(sd, feats):
    """mmseg FPNHead (eval, SyncBN as BN, dropout off) -> logits at stride 4."""
    out = None
    for i, (x, stride) in enumerate(zip(feats, (4, 8, 16, 32))):
        for k in range(max(1, int(math.log2(stride // 4)))):
            j = 2 * k if stride != 4 else k
            x = F.relu(_bn_eval(_conv(x, sd, f'decode_head.scale_heads.{i}.{j}.conv', padding=1),
                                sd, f'decode_head.scale_heads.{i}.{j}.bn'))
            if stride != 4:
                x = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
        out = x if out is None else out + F.interpolate(x, size=out.shape[2:], mode='bilinear',
                                                        align_corners=False)
    return _conv(out, sd, 'decode_head.conv_seg')


def official_forward(sd, img, tokens, backbone, text_heads, text_layers, decoder_heads,
                     decoder_layers, score_concat_index):
    """DenseCLIP.encode_decode before its final resize: every intermediate in a dict."""
    if backbone[0] == 'rn':
        levels, (global_feat, dense) = resnet_forward(sd, img, backbone[1], backbone[2])
    else:
        levels, (global_feat, dense) = vit_forward(sd, img, backbone[1], backbone[2],
                                                   backbone[3])
    B, C, H, W = dense.shape
    visual_context = torch.cat([global_feat.reshape(B, C, 1), dense.reshape(B, C, H * W)],
                               2).permute(0, 2, 1)
    text = text_forward(sd, tokens, text_heads, text_layers).expand(B, -1, -1)
    diff = context_decoder_forward(sd, text, visual_context, decoder_heads, decoder_layers)
    text_feats = text + sd['gamma'] * diff
    score = torch.einsum('bchw,bkc->bkhw', F.normalize(dense, dim=1, p=2),
                         F.normalize(text_feats, dim=2, p=2))
    levels = list(levels)
    levels[score_concat_index] = torch.cat([levels[score_concat_index], score], 1)
    neck = fpn_forward(sd, levels)
    return dict(levels=levels, global_feat=global_feat, dense=dense,
                text=text[:1], text_feats=text_feats, score_map=score, neck=neck,
                logits=fpn_head_forward(sd, neck))
