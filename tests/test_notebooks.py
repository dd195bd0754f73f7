"""The notebooks are committed with their outputs, and those outputs are current (tools/run_notebooks.py stores them).

Each code cell `nbdev_test` runs carries `metadata.source_hash`, the hash of the source its outputs were made from; a
cell edited since (or added without running) fails here with the command that refreshes it.
"""
import hashlib, json, re
from pathlib import Path
import pytest

NBS = Path(__file__).resolve().parents[1]/'nbs'
NOTEBOOKS = sorted(NBS.glob('*.ipynb'))
SKIP_FLAGS = re.compile(r'^#\|\s*(slow|notest|gpu|eval:\s*false)\b', re.M)
# A cell that draws: matplotlib, or one of the project's picture functions called (not defined) in it.
DRAWS = re.compile(r'\b(plt\.(subplots|figure|imshow|plot|show)|ax\.imshow|draw_[a-z_]+|plot_[a-z_]+|show_[a-z_]+)\(')
DEFINES = re.compile(r'^\s*def ', re.M)


def code_cells(path):
    cells = json.loads(path.read_text())['cells']
    for i, c in enumerate(cells):
        src = ''.join(c['source'])
        if c['cell_type'] == 'code' and src.strip() and not SKIP_FLAGS.search(src): yield i, src, c


def test_there_are_notebooks(): assert len(NOTEBOOKS) >= 15


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_current(path):
    "Every cell nbdev_test runs has outputs made from its present source."
    stale = [i for i, src, c in code_cells(path)
             if c.get('metadata', {}).get('source_hash') != hashlib.sha256(src.encode()).hexdigest()[:16]]
    assert not stale, (f"{path.name}: cells {stale} changed since their outputs were made (or were never run); "
                       f"run `python tools/run_notebooks.py nbs/{path.name}`")


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_drawing_cells_have_pictures(path):
    "A cell that draws (and does not only define functions) shows its picture."
    blank = [i for i, src, c in code_cells(path) if DRAWS.search(src) and not DEFINES.search(src)
             and not src.lstrip().startswith('#| export')
             and not any('image/png' in o.get('data', {}) for o in c.get('outputs', []))]
    assert not blank, f"{path.name}: cells {blank} draw but store no image"


def test_notebooks_stay_small():
    total = sum(p.stat().st_size for p in NOTEBOOKS)
    assert total < 15e6, f"nbs/ notebooks hold {total / 1e6:.1f} MB (limit 15 MB): store figures at a lower dpi"
    big = {p.name: p.stat().st_size for p in NOTEBOOKS if p.stat().st_size > 3e6}
    assert not big, f"notebooks over 3 MB: {big}"
