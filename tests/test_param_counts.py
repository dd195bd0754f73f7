"Encoder sizes against the papers' tables (VideoMAE Table / VideoMAE V2): built on the meta device."
import pytest, torch
from videomae_nb.encoder import VideoEncoder, get_config, count_params

PAPER_M = dict(small=22, base=87, large=305, huge=633, giant=1011)   # millions, as the papers report them

@pytest.mark.parametrize('preset', list(PAPER_M))
def test_encoder_params_match_paper(preset):
    with torch.device('meta'): enc = VideoEncoder(get_config(preset))
    n = count_params(enc) / 1e6
    assert abs(n - PAPER_M[preset]) / PAPER_M[preset] < 0.01, f'{preset}: {n:.2f}M vs paper {PAPER_M[preset]}M'

def test_base_pretrain_shapes_are_official():
    from videomae_nb.videomae import VideoMAE
    with torch.device('meta'): sd = VideoMAE('base').state_dict()
    assert sd['encoder.patch_embed.proj.weight'].shape == (768, 3, 2, 16, 16)
    assert sd['decoder.head.weight'].shape == (1536, 384)
    with torch.device('meta'): g = VideoMAE('giant').state_dict()
    assert g['encoder.patch_embed.proj.weight'].shape == (1408, 3, 2, 14, 14)
    assert g['decoder.head.weight'].shape == (1176, 512)
