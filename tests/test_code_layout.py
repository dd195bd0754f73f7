"""The shape of the code (issue 15): imports run one way and name nothing private of another module, the module graph
is the one the index notebook writes down, no line over 120 characters, no function with more than 6 required
positional parameters, no settings looked up by string key; and run folders of the code before the typed configs
(the old `config.json` keys, the old `state.pt` layout) still resume, exactly."""
import ast, json, os, re, shutil
from dataclasses import fields
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT/'videomae_nb'
MODULES = sorted(p.stem for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx'))

def _tree(name): return ast.parse((PKG/f'{name}.py').read_text())

def imports_of(name) -> dict[str, set[str]]:
    "Every module of the package `name` imports (at the top or inside a function) → the names it takes from it."
    out = {}
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if node.level: mod = f"videomae_nb.{mod}" if mod else 'videomae_nb'
            if mod == 'videomae_nb':                                   # `from videomae_nb import checkpoints`
                for a in node.names: out.setdefault(a.name, set())
            elif mod.startswith('videomae_nb.'):
                out.setdefault(mod.split('.')[1], set()).update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith('videomae_nb.'): out.setdefault(a.name.split('.')[1], set())
    out.pop(name, None)
    return out

def graph() -> dict[str, set[str]]: return {m: set(imports_of(m)) for m in MODULES}

def test_no_import_cycle():
    g, state, cycles = graph(), {}, []
    def visit(m, path):
        state[m] = 'open'
        for d in sorted(g.get(m, ())):
            if state.get(d) == 'open': cycles.append(path[path.index(d):] + [d]) if d in path else cycles.append([m, d])
            elif d not in state: visit(d, path + [d])
        state[m] = 'done'
    for m in MODULES:
        if m not in state: visit(m, [m])
    assert not cycles, f"import cycles: {cycles}"

def test_no_module_imports_a_private_name_of_another():
    bad = [f"{m} <- {d}.{n}" for m in MODULES for d, names in imports_of(m).items() for n in names
           if n.startswith('_')]
    for m in MODULES:                                                    # `from videomae_nb import checkpoints as ck`
        aliases = {a.asname or a.name for n in ast.walk(_tree(m)) if isinstance(n, ast.ImportFrom)
                   and (n.module == 'videomae_nb' or (n.level and not n.module)) for a in n.names}
        bad += [f"{m} <- {n.value.id}.{n.attr}" for n in ast.walk(_tree(m)) if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name) and n.value.id in aliases and n.attr.startswith('_')]
    assert not bad, f"private names used across modules: {bad}"

def documented_graph() -> dict[str, set[str]]:
    "The module graph the index notebook writes down: rows `| `module` | `a`, `b` |`."
    nb = json.loads((ROOT/'nbs'/'index.ipynb').read_text())
    text = '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
    start = text.index('<!-- module graph -->')
    rows = re.findall(r'^\| `(\w+)` \| ([^|]*) \|', text[start:text.index('<!-- end module graph -->')], re.M)
    return {m: set(re.findall(r'`(\w+)`', deps)) for m, deps in rows}

def test_the_index_notebook_writes_down_the_module_graph():
    assert documented_graph() == graph()

def test_lower_modules_do_not_import_the_scripts():
    "Loading weights, drawing pictures, reading run folders: none of it needs the trainer."
    g = graph()
    def reach(m, seen=None):
        seen = set() if seen is None else seen
        for d in g[m]:
            if d not in seen: seen.add(d); reach(d, seen)
        return seen
    for low in ('runs', 'checkpoints', 'viz', 'classifier', 'mvd', 'recipes'):
        assert not reach(low) & {'train', 'finetune', 'features', 'bench'}, (low, reach(low))

def _generated_all(lines):
    "Line numbers of nbdev's `__all__` block (written with a width nbdev fixes), to skip."
    skip, on = set(), False
    for i, l in enumerate(lines):
        if l.startswith('__all__ = ['): on = True
        if on: skip.add(i)
        if on and l.rstrip().endswith(']'): on = False
    return skip

def test_no_line_over_120_characters():
    long = []
    for p in sorted(PKG.glob('*.py')):
        if p.name == '_modidx.py': continue
        lines = p.read_text().splitlines()
        long += [f"{p.name}:{i + 1} ({len(l)})" for i, l in enumerate(lines) if len(l) > 120 and i not in _generated_all(lines)]
    for p in sorted((ROOT/'nbs').glob('*.ipynb')):
        for j, c in enumerate(json.loads(p.read_text())['cells']):
            if c['cell_type'] != 'code': continue
            long += [f"{p.name} cell {j} ({len(l)})" for l in ''.join(c['source']).splitlines() if len(l) > 120]
    assert not long, f"{len(long)} lines over 120 characters: {long[:20]}"

def test_no_function_takes_more_than_6_required_positional_parameters():
    wide = []
    for m in MODULES:
        for node in ast.walk(_tree(m)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)): continue
            a = node.args
            pos = a.posonlyargs + a.args
            required = pos[:len(pos) - len(a.defaults)]
            names = [x.arg for x in required if x.arg not in ('self', 'cls')]
            if len(names) > 6: wide.append(f"{m}.{getattr(node, 'name', 'lambda')}({', '.join(names)})")
    assert not wide, wide

def test_no_settings_dict_lookups():
    "`grep -c \"s\\['\" videomae_nb/*.py` is 0: settings are attributes of a config, not string keys of a dict."
    hits = [f"{p.name}:{i + 1}" for p in sorted(PKG.glob('*.py')) for i, l in enumerate(p.read_text().splitlines())
            if "s['" in l]
    assert not hits, hits

# --- the settings: flags and config.json keys as before, --help lists every one --------------------------------------

# The settings keys of config.json (and of every checkpoint's config) written by the code before the typed configs
# (commit 522f224), read from a pretraining and a fine-tuning run folder it made. `pos` was added to fine-tuning
# in that commit, after the fine-tuning folder was made.
OLD_PRETRAIN_SETTINGS = {
    'accum', 'batch_size', 'blr', 'clip_grad', 'cpu', 'cpu_matmul', 'data', 'decoder_depth', 'decoder_mask_ratio',
    'device_augment', 'distill_loss', 'drop_path', 'epochs', 'frames', 'grad_checkpointing', 'image_teacher',
    'image_teacher_ckpt', 'img_weight', 'keep', 'log_every', 'mask_ratio', 'mask_type', 'min_blr', 'mixed_precision',
    'norm_feature', 'num_sample', 'num_workers', 'objective', 'optimizer_impl', 'out', 'persistent_workers',
    'pin_memory', 'preset', 'quiet', 'recipe', 'resume', 'save_every', 'seed', 'size', 'steps', 'stride', 'target',
    'torch_compile', 'vid_weight', 'video_teacher', 'video_teacher_ckpt', 'warmup', 'weight_decay'}
OLD_FINETUNE_SETTINGS = {
    'accum', 'batch_size', 'blr', 'clip_grad', 'cpu', 'cpu_matmul', 'crop_scale', 'cutmix', 'data_path', 'data_root',
    'dataset_kind', 'drop_path', 'epochs', 'eval', 'eval_every', 'flip', 'frames', 'grad_checkpointing', 'head_drop',
    'init_scale', 'keep', 'layer_decay', 'log_every', 'min_blr', 'mixed_precision', 'mixup', 'mixup_prob',
    'mixup_switch_prob', 'nb_classes', 'no_flip', 'no_test', 'num_sample', 'num_workers', 'optimizer_impl', 'out',
    'preset', 'pretrained', 'quiet', 'randaug', 'recipe', 'reprob', 'resume', 'sampling', 'save_every', 'seed', 'size',
    'smoothing', 'steps', 'stride', 'test_list', 'test_num_crop', 'test_num_segment', 'torch_compile', 'train_list',
    'val_fraction', 'val_list', 'warmup_epochs', 'warmup_steps', 'weight_decay', 'pos'}
OLD_CONFIG_JSON = {'settings', 'model', 'total_steps', 'effective_batch', 'lr'}
ADDED = {'decoder', 'timeout', 'log_with'}  # since: issue 17 --decoder, 22 --timeout, 18 --log_with; old folders resume
PRETRAIN_ADDED = ADDED | {'patch_size'}   # and to pretraining (issue 16: --patch_size)
FINETUNE_ADDED = ADDED | {'teacher', 'distill_temperature', 'distill_alpha', 'distill_view'}   # and to fine-tuning (19)
OLD_PRETRAIN_STATE = {'optimizer', 'mask_rng', 'config', 'scaler', 'step'}      # no global random state yet
DATA = ROOT/'data_samples'
FAST = dict(data=str(DATA), frames=4, size=32, batch_size=2, num_workers=0, quiet=True)

def test_the_settings_keep_their_names():
    from videomae_nb.train import PretrainConfig
    from videomae_nb.finetune import FinetuneConfig
    assert set(PretrainConfig().settings()) == OLD_PRETRAIN_SETTINGS | PRETRAIN_ADDED
    assert set(FinetuneConfig().settings()) == OLD_FINETUNE_SETTINGS | FINETUNE_ADDED
    assert {f.name for f in fields(FinetuneConfig)} == (OLD_FINETUNE_SETTINGS | FINETUNE_ADDED) - {'flip'}   # flip: derived

@pytest.mark.parametrize('script', ['train', 'finetune', 'detect'])
def test_help_lists_every_flag_with_its_comment(script):
    import subprocess, sys
    from videomae_nb.cli import field_comments
    from videomae_nb.train import PretrainConfig
    from videomae_nb.finetune import FinetuneConfig
    from videomae_nb.detect import DetectConfig
    cls = dict(train=PretrainConfig, finetune=FinetuneConfig, detect=DetectConfig)[script]
    r = subprocess.run([sys.executable, f'videomae_nb/{script}.py', '--help'], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, 'COLUMNS': '1000'})
    assert r.returncode == 0, r.stderr
    help_text = ' '.join(r.stdout.split())
    notes = field_comments(cls)
    for f in fields(cls):
        flag = f'--no-{f.name}' if f.default is True else f'--{f.name}'
        assert re.search(rf'(^|\s){re.escape(flag)}(\s|$)', help_text), f'{flag} missing from --help'
        assert notes[f.name] and ' '.join(notes[f.name].split())[:40] in help_text, f'--{f.name}: no help text'

def test_the_run_folder_keeps_its_files_and_keys(tmp_path):
    from videomae_nb.train import main
    res = main(steps=2, out=str(tmp_path/'r'), **FAST)
    cfg = json.loads((Path(res['run_dir'])/'config.json').read_text())
    assert set(cfg) == OLD_CONFIG_JSON and set(cfg['settings']) == OLD_PRETRAIN_SETTINGS | PRETRAIN_ADDED
    state = torch.load(Path(res['run_dir'])/'checkpoints'/'checkpoint-0000002'/'state.pt', weights_only=True)
    assert set(state) == (OLD_PRETRAIN_STATE - {'mask_rng'}) | {'rng', 'torch_rng', 'cuda_rng'}

def _as_old_layout(ckpt:Path, run:Path):
    "Rewrite one of our checkpoints and its run's config.json as the code before the typed configs wrote them."
    st = torch.load(ckpt/'state.pt', weights_only=True)
    old = dict(optimizer=st['optimizer'], mask_rng=st['rng'], config=st['config'], scaler=st['scaler'], step=st['step'])
    assert set(old) == OLD_PRETRAIN_STATE
    settings = {k: v for k, v in old['config']['settings'].items() if k not in PRETRAIN_ADDED}
    old['config']['settings'] = {**settings, 'steps': 6}                      # the old code recorded filled values
    torch.save(old, ckpt/'state.pt')
    cfg = json.loads((run/'config.json').read_text())
    cfg['settings'] = settings
    (run/'config.json').write_text(json.dumps({k: cfg[k] for k in OLD_CONFIG_JSON}, indent=1))

def test_a_run_folder_of_the_old_layout_resumes_exactly(tmp_path):
    "An old folder (generator under `mask_rng`, no global random state) continues as the uninterrupted run did."
    from videomae_nb.runs import read_metrics
    from videomae_nb.train import main
    kw = dict(steps=6, save_every=3, keep=5, **FAST)
    full = Path(main(out=str(tmp_path/'full'), **kw)['run_dir'])
    part = tmp_path/'part'
    shutil.copytree(full, part)
    for ck in ('checkpoint-0000006',): shutil.rmtree(part/'checkpoints'/ck)
    _as_old_layout(part/'checkpoints'/'checkpoint-0000003', part)
    main(out=str(part), resume='auto', **kw)
    a = load_file(str(full/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    b = load_file(str(part/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=lambda m: f'{k}: {m}')
    assert [r['loss'] for r in read_metrics(part)] == pytest.approx([r['loss'] for r in read_metrics(full)], abs=1e-6)
