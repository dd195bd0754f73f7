"""The teaching checkpoint that ships with the package: it loads as what it records, its data never touches the
held-out clips, the model card's numbers are what it measures, and `videomae-vis --checkpoint teaching` draws it."""
import importlib.util, re
from pathlib import Path
import pytest
from videomae_nb.viz import TEACHING, load_model, read_clip, reconstruction_quality, main as vis_main

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = sorted((ROOT/'data_samples').glob('*.mp4'))
# the package files the five held-out clips were cut from (data_samples/LICENSES.md), and the other take of g1.avi
HELD_OUT_SOURCES = ('g1.avi', 'g2.avi', 'motion.mov', 'cockatoo.mp4', 'Shepard_Calais_1906', 'cityCC0')


def _tool(name:str):
    spec = importlib.util.spec_from_file_location(name, ROOT/'tools'/'teaching'/f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_files_are_there_and_small():
    for f in ('model.safetensors', 'config.json', 'README.md', 'LICENSES.md'): assert (TEACHING/f).is_file(), f
    assert (TEACHING/'model.safetensors').stat().st_size <= 20 * 2**20
    assert 'recursive-include videomae_nb/assets' in (ROOT/'MANIFEST.in').read_text()   # it ships in the wheel


def test_loads_as_it_was_trained():
    model, info = load_model('teaching')
    assert not model.normalize_target and info['target'] == 'pixel'
    assert (info['frames'], info['stride'], info['size'], model.cfg.patch_size) == (16, 4, 64, 8)
    with pytest.raises(ValueError, match='--target pixel'): load_model('teaching', target='norm')


def test_training_data_leaves_the_held_out_clips_out():
    make_data = _tool('make_data')
    sources = list(make_data.REAL.values()) + list(make_data.PHOTOS.values())
    assert not [s for s in sources for h in HELD_OUT_SOURCES if h in s]
    licences = (TEACHING/'LICENSES.md').read_text()
    assert all(f'`{name}`' in licences for name in make_data.REAL)
    assert all(name in licences for name in make_data.PHOTOS)


def card_table() -> dict:
    "The per-clip rows of the model card: name -> (model, mean, gauss) hidden-pixel MSE."
    rows = {}
    for line in (TEACHING/'README.md').read_text().splitlines():
        m = re.match(r'\|\s*`?([\w ]+?)`?\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|', line)
        if m: rows[m.group(1)] = tuple(float(x) for x in m.groups()[1:])
    return rows


def test_model_card_numbers_are_measured():
    model, info = load_model('teaching')
    clips = {p.stem: read_clip(p, info['frames'], info['stride'], info['size']) for p in HELD_OUT}
    q, card = reconstruction_quality(model, clips), card_table()
    assert set(clips) | {'average'} <= set(card), sorted(card)
    for name, c in q.clips.items():
        assert card[name] == pytest.approx((c['model'], c['mean'], c['gauss']), rel=0.02, abs=2e-5), name
    assert card['average'] == pytest.approx((q.average('model'), q.average('mean'), q.average('gauss')), rel=0.02)


def test_model_card_extra_checks_are_measured():
    "The card's fifteen-window row and ring split are what tools/teaching/evaluate.py measures."
    card, ev = (TEACHING/'README.md').read_text(), _tool('evaluate')
    model, info = load_model('teaching')
    m = re.search(r'\| 15 windows [^|]*\| ([\d.]+)× \| \*\*([\d.]+)×\*\* \(first windows ([\d.]+)×, centred ([\d.]+)×, '
                  r'last ([\d.]+)×\) \|', card)
    assert m, 'the 15-window row of the card'
    w = ev.by_window(model, info)
    assert [w[k] for k in ('mean', 'gauss', 'first', 'centre', 'last')] == pytest.approx(
        [float(x) for x in m.groups()], abs=0.003)
    rest, ring = (re.search(p, ' '.join(card.split())) for p in (r'On the rest the model is \*\*([\d.]+)× the Gaussian',
                                                                  r'on the ring it is ([\d.]+)× the Gaussian'))
    assert rest and ring, 'the ring split of the card'
    r = ev.ring_split(model, ev.held_out(info))
    assert (r['rest'], r['ring']) == pytest.approx((float(rest.group(1)), float(ring.group(1))), abs=0.01)


def test_vis_draws_it(tmp_path):
    res = vis_main(str(ROOT/'data_samples'/'cockatoo.mp4'), checkpoint='teaching', out=str(tmp_path), quiet=True)
    assert res['modes'] == ['pixel'] and (tmp_path/'cockatoo-pixel.png').is_file()


def test_a_local_folder_named_teaching_is_not_silently_shadowed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path); (tmp_path/'teaching').mkdir()
    with pytest.raises(ValueError, match=r'pass \./teaching'): load_model('teaching')
