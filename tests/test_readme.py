"The README's commands are the ones CI and a newcomer run."
import re
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]

def _bash_blocks(text): return re.findall(r'```bash\n(.*?)```', text, re.S)

def test_ci_runs_the_readme_test_command():
    readme = (ROOT/'README.md').read_text()
    test_cmd = next(l for b in _bash_blocks(readme) for l in b.splitlines() if 'pytest' in l).strip()
    ci = [l.strip() for l in (ROOT/'.ci/run').read_text().splitlines() if l.strip() and not l.startswith('#')]
    assert test_cmd in ci, f'.ci/run does not run the README test command {test_cmd!r}'

def test_readme_main_command_uses_the_default_training_script():
    readme = (ROOT/'README.md').read_text()
    assert 'pip install -e . && accelerate launch videomae_nb/train.py' in readme
    assert (ROOT/'videomae_nb/train.py').exists()

def test_readme_pictures_exist():
    for p in re.findall(r'!\[[^\]]*\]\(([^)]+)\)', (ROOT/'README.md').read_text()): assert (ROOT/p).exists(), p
