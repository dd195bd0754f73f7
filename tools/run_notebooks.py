#!/usr/bin/env python
"""Run notebooks as `nbdev_test` does and store their outputs, each code cell stamped with the hash of its source.

    python tools/run_notebooks.py                      # every notebook in nbs/
    python tools/run_notebooks.py nbs/02_masking.ipynb # one (or several)

Cells `nbdev_test` skips (`#| slow`, `#| notest`, `#| gpu`, `#| eval: false`) are not run and keep no outputs. Every
other code cell gets its outputs and `metadata.source_hash`; `tests/test_notebooks.py` fails for a cell whose source
no longer has the hash its outputs were made with, so outputs cannot silently go stale. Figures are stored as PNG
(pyplot's at 72 dpi, the draw_* functions' at their own dpi), each at most 900 pixels wide in 256 colours (a
reconstruction grid costs about 200 kB instead of 500-700 kB). The notebook is then cleaned with `nbdev_clean`
(execution counts and other metadata removed).
"""
import argparse, base64, hashlib, io, re, subprocess, sys, time
from pathlib import Path
from PIL import Image
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SKIP_FLAGS = re.compile(r'^#\|\s*(slow|notest|gpu|eval:\s*false)\b', re.M)
# The inline backend shows pyplot figures and registers the PNG display of the `Figure`s the draw_* functions return.
SETUP = ("%matplotlib inline\nimport matplotlib, warnings; matplotlib.rcParams.update({'figure.dpi': 72, 'savefig.dpi': 72})\n"
         "warnings.filterwarnings('ignore', message='IProgress not found')")   # tqdm's note on a missing widget


def source_hash(source:str) -> str:
    "The hash a code cell's outputs are stamped with (`tests/test_notebooks.py` computes the same)."
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def skipped(source:str) -> bool: return bool(SKIP_FLAGS.search(source))


def small_png(data:str, max_width:int=900) -> str:
    "A base64 PNG at most `max_width` wide, in 256 colours."
    im = Image.open(io.BytesIO(base64.b64decode(data))).convert('RGB')
    if im.width > max_width: im = im.resize((max_width, round(im.height * max_width / im.width)), Image.LANCZOS)
    buf = io.BytesIO(); im.quantize(256, method=Image.Quantize.MEDIANCUT).save(buf, 'PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def run_notebook(path:Path, timeout:int=600) -> float:
    "Execute `path` in its folder with a fresh kernel; write its outputs and hashes back. Returns the seconds taken."
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == 'code']
    kept = {id(c): c.source for c in code if skipped(c.source)}
    for c in code:
        c.outputs, c.execution_count = [], None
        if id(c) in kept: c.source = ''                       # not run, as nbdev_test does not run them
    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP))
    t = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}}
                   ).execute()
    nb.cells.pop(0)
    for c in code:
        if id(c) in kept: c.source, c.outputs = kept[id(c)], []
        else: c.metadata['source_hash'] = source_hash(c.source)
        for o in c.outputs:
            if 'image/png' in o.get('data', {}): o.data['image/png'] = small_png(o.data['image/png'])
        c.metadata.pop('execution', None)
    nbformat.write(nb, path)
    subprocess.run(['nbdev_clean', '--fname', str(path)], check=True, cwd=ROOT)
    return time.time() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='*', type=Path, help='notebooks to run (default: every one in nbs/)')
    p.add_argument('--timeout', type=int, default=600, help='seconds per cell')
    args = p.parse_args()
    paths = args.notebooks or sorted((ROOT/'nbs').glob('*.ipynb'))
    for path in paths:
        if not path.exists(): sys.exit(f"no notebook {path}")
        print(f"{path}: {run_notebook(path.resolve(), args.timeout):.0f} s, {path.stat().st_size / 1e3:.0f} kB",
              flush=True)


if __name__ == '__main__': main()
