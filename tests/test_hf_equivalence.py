"Our VideoMAE against transformers' VideoMAEForPreTraining with copied weights (HF_INTEROP.md §3)."
import pytest, torch
transformers = pytest.importorskip('transformers')
from videomae_nb.encoder import get_config
from videomae_nb.videomae import VideoMAE
from videomae_nb.masking import tube_mask
from videomae_nb.ops import cpu_matmul_mode
from videomae_nb.checkpoints import official_to_hf, hf_to_official, hf_config, match_hf_eps

def _pair(preset='small', size=112, frames=16, attn='sdpa', seed=0):
    torch.manual_seed(seed)
    ours = VideoMAE(get_config(preset)).eval()
    with torch.no_grad():                       # perturb every parameter: fresh inits hide mistakes (zero biases)
        for p in ours.parameters(): p.add_(torch.randn_like(p) * 0.02)
    cfg = hf_config(ours.cfg, img_size=size, num_frames=frames, pretrain=True)
    cfg._attn_implementation = attn
    hf = match_hf_eps(transformers.VideoMAEForPreTraining(cfg)).eval()
    missing, unexpected = hf.load_state_dict(official_to_hf(ours.state_dict()), strict=True)
    return ours, hf

@pytest.mark.parametrize('cpu_matmul', ['auto', 'torch'])   # oneDNN linear layers (the default on x86) and torch's own
def test_predictions_loss_and_gradients_match_transformers(cpu_matmul):
    with cpu_matmul_mode(cpu_matmul): _check_predictions_loss_and_gradients()

def _check_predictions_loss_and_gradients():
    ours, hf = _pair()
    video = torch.randn(2, 3, 16, 112, 112)
    mask = tube_mask(2, ours.encoder.grid(video), 0.9, torch.Generator().manual_seed(0))
    loss, pred = ours.loss(video, mask)
    out = hf(pixel_values=video.permute(0, 2, 1, 3, 4), bool_masked_pos=mask)
    assert pred.shape == out.logits.shape == (2, 8 * 44, 1536)        # int(0.9*49) = 44 hidden per slice, 8 slices
    torch.testing.assert_close(pred, out.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, out.loss, atol=1e-5, rtol=1e-5)
    loss.backward(); out.loss.backward()
    ours_grads = {k: p.grad for k, p in ours.named_parameters()}
    hf_grads = hf_to_official({k: p.grad for k, p in hf.named_parameters()})
    assert sorted(ours_grads) == sorted(hf_grads)
    for k in ours_grads:
        torch.testing.assert_close(ours_grads[k], hf_grads[k], atol=1e-5, rtol=1e-4, msg=lambda m: f'{k}: {m}')

def test_unnormalized_targets_match_transformers():
    ours, hf = _pair(preset='tiny', size=64, frames=8, seed=1)
    ours.normalize_target = False; hf.config.norm_pix_loss = False
    video = torch.randn(2, 3, 8, 64, 64)
    mask = tube_mask(2, ours.encoder.grid(video), 0.75, torch.Generator().manual_seed(1))
    loss, _ = ours.loss(video, mask)
    torch.testing.assert_close(loss, hf(pixel_values=video.permute(0, 2, 1, 3, 4), bool_masked_pos=mask).loss, atol=1e-5, rtol=1e-5)

def test_bit_exact_with_eager_attention():
    "With transformers' eager attention and matched eps the predictions agree to float rounding of SDPA vs matmul."
    ours, hf = _pair(preset='tiny', size=64, frames=8, attn='eager', seed=2)
    video = torch.randn(1, 3, 8, 64, 64)
    mask = tube_mask(1, ours.encoder.grid(video), 0.5, torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(video, mask), hf(pixel_values=video.permute(0, 2, 1, 3, 4), bool_masked_pos=mask).logits,
                                   atol=1e-5, rtol=1e-5)
