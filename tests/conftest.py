import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long-running tests (run with -m slow)')
    config.addinivalue_line('markers', 'gpu: needs a CUDA device')

@pytest.fixture
def data_dir(): return DATA
