"VideoMAE V2 dual masking: the loss against a slow re-computation of the official formula, V1 equality, FLOPs."
import pytest, torch
from videomae_nb.data import denormalize
from videomae_nb.encoder import get_config
from videomae_nb.masking import tube_mask, running_cell_mask
from videomae_nb.patching import sincos_table_1d
from videomae_nb.videomae import VideoMAE, pretrain_macs

def _slow_official_v2_loss(model, video, mask, dmask):
    """REFERENCE §2, written out per sample with index lists: decoder input = [projected visible tokens + their
    positions ; one mask token per decoder-kept position + its position], predictions = the last tokens, targets =
    per-tubelet, per-channel normalized pixels (unbiased std + 1e-6) at the decoder-kept positions, loss weight = the
    encoder mask there; loss = sum(per-token MSE x weight) / sum(weight)."""
    cfg = model.cfg
    B, _, T, H, W = video.shape
    t, h, w = T // 2, H // 16, W // 16
    pos = sincos_table_1d(t * h * w, cfg.decoder_dim)[0]
    num, den = 0., 0.
    for b in range(B):
        vis = [n for n in range(t * h * w) if not mask[b, n]]
        keep = [n for n in range(t * h * w) if not dmask[b, n]]
        enc = model.encoder_to_decoder(model.encoder(video[b:b+1], mask[b:b+1]))[0]
        x = torch.cat([enc + pos[vis], model.mask_token[0] + pos[keep]])[None]
        for blk in model.decoder.blocks: x = blk(x)
        pred = model.decoder.head(model.decoder.norm(x[0, -len(keep):]))
        pix = denormalize(video[b])                                       # (3, T, H, W) in [0, 1]
        for row, n in enumerate(keep):
            ti, rem = divmod(n, h * w); hi, wi = divmod(rem, w)
            cube = pix[:, 2*ti:2*ti+2, 16*hi:16*hi+16, 16*wi:16*wi+16]      # (c, pt, ph, pw)
            cube = cube.permute(1, 2, 3, 0).reshape(512, 3)                # pixel order (pt, ph, pw), channel last
            cube = (cube - cube.mean(0)) / (cube.var(0, unbiased=True).sqrt() + 1e-6)
            err = ((pred[row] - cube.reshape(-1)) ** 2).mean()
            wgt = float(mask[b, n])
            num, den = num + err * wgt, den + wgt
    return num / den

def test_v2_loss_equals_slow_official_formula():
    torch.manual_seed(0)
    model = VideoMAE(get_config('tiny', depth=2, decoder_depth=2)).eval()
    with torch.no_grad():
        for p in model.parameters(): p.add_(torch.randn_like(p) * 0.02)
    video = torch.randn(2, 3, 8, 64, 64)
    g = torch.Generator().manual_seed(3)
    grid = model.encoder.grid(video)
    mask, dmask = tube_mask(2, grid, 0.75, g), running_cell_mask(2, grid, 0.5, g)
    with torch.no_grad():
        loss, pred = model.loss(video, mask, dmask)
        assert pred.shape == (2, 32, 1536)                            # half of 4x4x4 positions are decoded
        torch.testing.assert_close(loss, _slow_official_v2_loss(model, video, mask, dmask), atol=1e-5, rtol=1e-5)

def test_v2_without_decoder_mask_is_v1_bit_for_bit():
    torch.manual_seed(1)
    model = VideoMAE(get_config('tiny', depth=1, decoder_depth=1))
    video = torch.randn(2, 3, 8, 64, 64)
    mask = tube_mask(2, model.encoder.grid(video), 0.9, torch.Generator().manual_seed(0))
    l1, p1 = model.loss(video, mask)
    l2, p2 = model.loss(video, mask, ~mask)            # the official V2 dataset sets decode_mask = 1 - mask
    assert torch.equal(p1, p2) and torch.equal(l1, l2)
    l1.backward(); g1 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(); l2.backward(); g2 = [p.grad for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))

def test_vit_b_flops_match_the_paper():
    "VideoMAE V2's ablation: 35.48 GMACs without and 25.87 with the 50% running-cell decoder mask (ViT-B, 16x224^2)."
    with torch.device('meta'): model = VideoMAE('base')
    model = model.to_empty(device='cpu').eval()
    v1 = pretrain_macs(model, official_patch_embed=True) / 1e9
    v2 = pretrain_macs(model, decoder_mask_ratio=0.5, official_patch_embed=True) / 1e9
    assert abs(v1 - 35.48) / 35.48 < 0.02, v1
    assert abs(v2 - 25.87) / 25.87 < 0.02, v2
    ours = pretrain_macs(model) / 1e9                    # we embed only the visible tubelets
    assert ours < v1 - 1.5

def test_running_cell_counts_and_rotation():
    g = torch.Generator().manual_seed(0)
    for ratio, k in ((0.25, 1), (0.5, 2), (0.75, 3)):
        m = running_cell_mask(4, (8, 14, 14), ratio, g).view(4, 8, 7, 2, 7, 2)
        assert (m.sum(dim=(3, 5)) == k).all()                            # k dropped in every 2x2 cell, every slice
        cells = m.permute(0, 1, 2, 4, 3, 5).reshape(4, 8, 49, 4)
        assert (cells == cells[:, :, :1]).all()                          # the same pattern in every cell
        assert torch.equal(cells[:, 1:, 0], cells[:, :-1, 0].roll(-1, dims=-1))  # advances one step per slice
