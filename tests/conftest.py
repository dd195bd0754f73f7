import os, sys
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'

def pytest_configure(config):
    import tempfile                  # the suite's kernel measurements go to a cache of its own, not the user's
    os.environ.setdefault('VIDEOMAE_NB_CACHE', tempfile.mkdtemp(prefix='videomae_nb_cache_'))
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 1))     # `pytest -n N` (pytest-xdist): N processes
    if workers > 1:                  # share the cores among them, and with the scripts they start, instead of N x all
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ.setdefault('OMP_NUM_THREADS', threads); os.environ.setdefault('MKL_NUM_THREADS', threads)
        import torch
        torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
    config.addinivalue_line('markers', 'slow: long-running tests')
    config.addinivalue_line('markers', 'gpu: needs a CUDA device')

def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available(): return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords: item.add_marker(skip)

def write_video(path, frames:int=20, width:int=96, height:int=64, fps:int=10, codec:str='libx264', pix_fmt:str='yuv420p'):
    "Write a small synthetic video (a bright bar moving right) with PyAV; returns the path."
    import av
    with av.open(str(path), 'w') as c:
        s = c.add_stream(codec, rate=fps); s.width, s.height, s.pix_fmt = width, height, pix_fmt
        for i in range(frames):
            img = np.full((height, width, 3), 40, np.uint8)
            x = (i * 4) % max(width - 8, 1); img[:, x:x + 8] = (250, 200, 50)
            for p in s.encode(__import__('av').VideoFrame.from_ndarray(img, format='rgb24')): c.mux(p)
        for p in s.encode(): c.mux(p)
    return Path(path)

@pytest.fixture
def data_dir(): return DATA

@pytest.fixture
def make_video(): return write_video

def pytest_terminal_summary(terminalreporter):
    "Name the versions the suite ran on (CI installs into a fresh virtualenv, as a newcomer does)."
    import platform, torch
    try: import transformers; hf = transformers.__version__
    except ImportError: hf = 'not installed'
    terminalreporter.write_line(f"environment: Python {platform.python_version()}, torch {torch.__version__}, "
                                f"transformers {hf}, {sys.prefix}")
