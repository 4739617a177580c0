"""`vbg segment` and `vbg export` end to end, as a user runs them (separate processes)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA, PEOPLE, iou, read_alpha, run_vbg, unreadable_to_child

TORCH_EXTRA = "needs the torch extra: pip install -e '.[torch]'"
PHOTO = PEOPLE / "example03_background01.jpg"
PHOTO_ALPHA = PEOPLE / "example03_background01_alpha.png"


def test_segment_a_phone_photo_in_heic_finds_the_person_upright_and_keeps_its_profile(tmp_path):
    """An iPhone's photo (HEIC: tiles in a grid, stored turned with an irot that shows it upright;
    tests/data/people/ATTRIBUTION.md): the mask is the upright picture's, as good as the JPEG's,
    and a cut-out keeps the photo's colour profile. It was "not an image vbg can read"."""
    from vbg.images import icc_profile

    mask, cut = tmp_path / "mask.png", tmp_path / "cut.png"
    for out, extra in ((mask, ()), (cut, ("--cutout",))):
        proc = run_vbg("segment", str(PEOPLE / "example03_background01.heic"), "-o", str(out), "--model", "selfie",
                       *extra)
        assert proc.returncode == 0, proc.stderr
    assert iou(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) / 255, read_alpha(PHOTO_ALPHA)) > 0.85
    phone = DATA / "phone.heic"  # the colour chart with a Display P3 profile
    proc = run_vbg("segment", str(phone), "-o", str(cut), "--cutout", "--model", "selfie", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(cut), cv2.IMREAD_UNCHANGED).shape == (512, 64, 4)  # upright, every tile
    assert icc_profile(cut) == icc_profile(phone) is not None


def test_a_cutout_keeps_nothing_of_the_room_where_it_is_transparent(tmp_path):
    """Where a cut-out is fully transparent its colour is black: an app that drops the alpha (or
    vbg, given the cut-out as a background) showed the whole room again, every pixel of it kept
    under the transparency. Where the person is opaque the photo's pixels are kept as they are."""
    out = tmp_path / "cut.png"
    proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "--cutout", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rgba = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    clear, opaque = rgba[..., 3] == 0, rgba[..., 3] == 255
    assert clear.mean() > 0.3 and opaque.mean() > 0.1
    assert not rgba[..., :3][clear].any()
    np.testing.assert_array_equal(rgba[..., :3][opaque], cv2.imread(str(PHOTO))[opaque])


def test_a_cutout_profile_goes_only_where_it_can_be_kept(tmp_path):
    """A CMYK or grey photo's profile is not written into an RGB cut-out (a CMYK one in a PNG made
    libpng warn "invalid ICC profile color space", and viewers misread it); a phone's Display P3
    profile, kept in a .png, is said lost in a .webp or .tif (it went without a word)."""
    from vbg.images import icc_profile, write_image

    rgba = np.zeros((8, 8, 4), np.uint8)
    cmyk = bytes(16) + b"CMYK" + b"Lab " + bytes(12) + b"acsp" + bytes(88)
    write_image(tmp_path / "c.png", rgba, icc=cmyk)
    assert icc_profile(tmp_path / "c.png") is None
    phone = DATA / "phone.heic"  # a Display P3 profile
    for name in ("cut.webp", "cut.tif"):
        proc = run_vbg("segment", str(phone), "-o", str(tmp_path / name), "--cutout", "--model", "selfie")
        assert proc.returncode == 0, proc.stderr
        assert f"vbg: {name}: the photo's colour profile is kept in a .png only" in proc.stderr, proc.stderr


def _one_line_error(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in lines if ln.startswith("vbg: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_export_random_init_then_segment_with_it(tmp_path):
    pytest.importorskip("torch", reason=f"vbg export {TORCH_EXTRA}")
    onnx = pytest.importorskip("onnx", reason=f"vbg export {TORCH_EXTRA}")
    model = tmp_path / "m.onnx"
    proc = run_vbg("export", "--random-init", "--size", "256x256", "-o", str(model))
    assert proc.returncode == 0, proc.stderr
    graph = onnx.load(str(model), load_external_data=False)
    assert [o.name for o in graph.graph.output] == ["output"]
    assert not list(tmp_path.glob(".*partial"))  # nothing half-written beside it

    mask = tmp_path / "mask.png"
    proc = run_vbg("segment", str(PHOTO), "--model", str(model), "-o", str(mask))
    assert proc.returncode == 0, proc.stderr
    out = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
    photo = cv2.imread(str(PHOTO))
    assert out.shape == photo.shape[:2] and out.dtype == np.uint8  # the image's own size


def test_segment_with_selfie_finds_the_person(tmp_path):
    mask = tmp_path / "mask.png"
    proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "-o", str(mask))
    assert proc.returncode == 0, proc.stderr
    pred = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    assert iou(pred, read_alpha(PEOPLE / "example03_background01_alpha.png")) >= 0.85


def test_segment_a_gif_finds_the_person_whatever_opencv_reads(tmp_path):
    """A photo saved as GIF (256 colours) is segmented like the JPEG it came from. OpenCV before
    4.11 (vbg's floor is 4.10: CI's second stage) has no GIF reader: vbg called the GIF
    "damaged"; FFmpeg decodes it now, the same first frame a GIF background shows."""
    import av

    rgb = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    gif = tmp_path / "photo.gif"
    with av.open(str(gif), "w") as out:
        stream = out.add_stream("gif", rate=10)
        stream.height, stream.width = rgb.shape[:2]
        stream.pix_fmt = "rgb8"
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="rgb8")
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    mask = tmp_path / "mask.png"
    proc = run_vbg("segment", str(gif), "--model", "selfie", "-o", str(mask))
    assert proc.returncode == 0, proc.stderr
    pred = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    assert pred.shape == rgb.shape[:2] and iou(pred, read_alpha(PHOTO_ALPHA)) >= 0.85


def test_segment_into_a_folder_whose_name_looks_like_an_image(tmp_path):
    """``-o`` that is a folder (one named ``masks.png``) or ends in a slash is a folder, whatever
    its name: the mask goes in it (vbg refused it as an existing file, and with --overwrite failed
    on "Is a directory"; a slash was dropped and a file written)."""
    (tmp_path / "masks.png").mkdir()
    for out in (tmp_path / "masks.png", f"{tmp_path / 'new.png'}/"):
        proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert [p.name for p in Path(out).iterdir()] == [f"{PHOTO.stem}.png"]
    proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "-o", "")
    assert proc.returncode == 2 and proc.stderr == "vbg: error: -o is empty: give an output file or folder name\n"
    proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "-o", "-")  # not a folder named "-"
    assert proc.returncode == 2 and "-o - (standard output) is not supported" in _one_line_error(proc)


def test_a_tiff_cutout_marks_its_fourth_channel_as_alpha(tmp_path):
    """A .tif cut-out's fourth channel is tagged as transparency (ExtraSamples = unassociated
    alpha): OpenCV wrote none, so libtiff readers warned and took it for an unknown channel (GIMP
    asks what it is). Its alpha is the PNG cut-out's, and so is the person (OpenCV's reader
    premultiplies a TIFF's alpha, so only opaque pixels compare as they are)."""
    import subprocess
    import sys

    for name in ("c.tif", "c.png"):
        proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "--cutout", "-o", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
    code = f"import cv2; print(cv2.imread({str(tmp_path / 'c.tif')!r}, -1).shape)"
    read = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert read.stdout.strip() == f"{cv2.imread(str(PHOTO)).shape[:2] + (4,)}" and "TIFF" not in read.stderr, read
    tif, png = (cv2.imread(str(tmp_path / n), cv2.IMREAD_UNCHANGED) for n in ("c.tif", "c.png"))
    np.testing.assert_array_equal(tif[..., 3], png[..., 3])
    opaque = png[..., 3] == 255
    assert opaque.mean() > 0.1
    np.testing.assert_array_equal(tif[opaque], png[opaque])


def test_segment_batch_writes_cutouts_to_a_folder(tmp_path):
    images = sorted(PEOPLE.glob("example03_background0?.jpg"))
    proc = run_vbg("segment", *map(str, images), "--model", "selfie", "--cutout", "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    for img in images:
        rgba = cv2.imread(str(tmp_path / "out" / f"{img.stem}.png"), cv2.IMREAD_UNCHANGED)
        truth = read_alpha(img.with_name(img.stem + "_alpha.png"))
        assert rgba.shape == (*truth.shape, 4)
        assert iou(rgba[:, :, 3] / 255, truth) >= 0.8


def test_segment_takes_a_quoted_pattern_and_never_writes_two_images_to_one_name(tmp_path):
    """A pattern in quotes is expanded as vbg process expands it (it was taken as a file name), and
    two images whose mattes would have one name (a/x.jpg, b/x.jpg) are refused, naming both,
    before anything is written: the second matte replaced the first."""
    pattern = str(PEOPLE / "example03_background0?.jpg")
    proc = run_vbg("segment", pattern, "--model", "selfie", "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    stems = sorted(p.stem for p in PEOPLE.glob("example03_background0?.jpg"))
    assert len(stems) >= 2 and sorted(p.stem for p in (tmp_path / "out").iterdir()) == stems
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.jpg").write_bytes(PHOTO.read_bytes())
    proc = run_vbg("segment", str(tmp_path / "a/x.jpg"), str(tmp_path / "b/x.jpg"), "--model", "selfie",
                   "-o", str(tmp_path / "dup"))
    line = _one_line_error(proc)
    assert proc.returncode == 2 and "a/x.jpg and " in line and "b/x.jpg would both be written to " in line, line
    assert not (tmp_path / "dup").exists() and "model selfie" not in proc.stderr


def test_segment_takes_a_folder_of_photos(tmp_path):
    """``vbg segment photos/ -o masks/``: a mask for each photo in the folder (a phone's HEIC
    too), a note beside them left alone; a folder of videos, or with no images, is one line
    saying what to do. It was "image photos is a folder, not a file: check the path"."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "desk.jpg").write_bytes(PHOTO.read_bytes())
    (photos / "phone.heic").write_bytes((PEOPLE / "example03_background01.heic").read_bytes())
    (photos / "notes.txt").write_text("x")
    from media import write_gif

    write_gif(photos / "wave.gif", [(255, 0, 0), (0, 0, 255)], [0, 10])  # read as vbg segment wave.gif
    # reads it, its first image (a folder's GIFs were left out unsaid)
    proc = run_vbg("segment", str(photos), "--model", "selfie", "-o", str(tmp_path / "masks"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["desk.png", "phone.png", "wave.png"]
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "talk.mp4").write_bytes(b"\0" * 16)
    (tmp_path / "empty").mkdir()
    for folder, want in ((videos, f"{videos} holds videos, not photos: for them, vbg process {videos} -o OUT"),
                         (tmp_path / "empty", f"{tmp_path / 'empty'} is a folder with no images in it: give image "
                                              "files (PNG, JPEG, WebP, HEIC, AVIF, BMP or TIFF) or a folder of them")):
        proc = run_vbg("segment", str(folder), "--model", "selfie", "-o", str(tmp_path / "out"))
        assert proc.returncode == 9 and _one_line_error(proc) == f"vbg: error: {want}", proc.stderr


def test_a_size_the_selfie_model_cannot_take_names_what_can(tmp_path):
    """``--size 512`` with the bundled selfie model (fixed at 256x256): one line saying to drop it,
    and that RMBG-1.4 takes any size. It said to export a model at that size with vbg export, which
    makes RMBG-1.4 graphs only."""
    proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "--size", "512", "-o", str(tmp_path / "m.png"))
    assert proc.returncode == 2 and _one_line_error(proc) == (
        "vbg: error: --size 512 does not fit selfie (bundled), whose input is fixed at 256x256: drop --size (this model comes "
        "at that size only; RMBG-1.4 takes any size)"), proc.stderr


def test_segment_to_an_image_type_it_cannot_write_is_refused(tmp_path):
    """`-o mask.gif` for one image: refused with the names it can write; it made a folder
    mask.gif holding example03_background01.png."""
    proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "-o", str(tmp_path / "mask.gif"))
    line = _one_line_error(proc)
    assert proc.returncode == 2 and "does not write .gif images: name the mask mask.png" in line, line
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "shots.v2").mkdir()  # a folder that exists is a folder, whatever its name
    proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "-o", str(tmp_path / "shots.v2"))
    assert proc.returncode == 0 and (tmp_path / "shots.v2" / (PHOTO.stem + ".png")).is_file(), proc.stderr


def test_segment_opens_the_model_only_for_an_image_that_reads(tmp_path):
    """An image that cannot be read is said before the model is opened (for RMBG-1.4 that may be a
    download); in a batch the model opens with the first image that reads."""
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image\n")
    proc = run_vbg("segment", str(bad), "--model", "selfie", "-o", str(tmp_path / "m.png"))
    assert proc.returncode == 9 and "notes.jpg is not an image" in _one_line_error(proc)
    assert "model selfie" not in proc.stderr
    proc = run_vbg("segment", str(bad), str(PHOTO), "--model", "selfie", "-o", str(tmp_path / "out"))
    assert proc.returncode == 1 and "notes.jpg" in _one_line_error(proc)
    assert proc.stderr.index("notes.jpg") < proc.stderr.index("model selfie")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [PHOTO.stem + ".png"]


def test_rmbg_without_network_names_the_fix(tmp_path, offline_env):
    proc = run_vbg("segment", str(PHOTO), "--model", "rmbg-1.4", "-o", str(tmp_path / "m.png"),
                   env={**offline_env, "HF_TOKEN": "hf_vbg_test"}, timeout=300)
    assert proc.returncode == 5
    line = _one_line_error(proc)
    assert "--model selfie" in line and "--model PATH" in line
    assert not (tmp_path / "m.png").exists()


def test_default_model_without_network_runs_the_selfie_model_and_says_why(tmp_path, offline_env):
    """No model chosen, RMBG-1.4 neither cached nor downloadable: the bundled model runs, and one
    line says why and the one step that enables RMBG-1.4."""
    out = tmp_path / "m.png"
    proc = run_vbg("segment", str(PHOTO), "-o", str(out), env=offline_env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "RMBG-1.4 is not available" in ln]
    assert len(notes) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "selfie" in notes[0] and "no Hugging Face token" in notes[0] and "hf auth login" in notes[0]
    assert "https://huggingface.co/briaai/RMBG-1.4" in notes[0]
    mask = read_alpha(out)
    assert iou(mask, read_alpha(PHOTO_ALPHA)) > 0.85  # a real mask of the person, from the selfie model


def test_default_model_with_a_token_but_no_network_names_the_network(tmp_path, offline_env):
    proc = run_vbg("segment", str(PHOTO), "-o", str(tmp_path / "m.png"),
                   env={**offline_env, "HF_TOKEN": "hf_vbg_test"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "RMBG-1.4 is not available" in ln]
    assert len(notes) == 1 and "cannot be reached" in notes[0] and "connect to the internet" in notes[0]


def test_default_model_with_a_hub_cache_that_cannot_take_it_runs_the_selfie_model(tmp_path, offline_env):
    """A token, but a Hugging Face cache that cannot be written (a read-only home, HF_HOME under a
    file, a full disk): the download could not land anywhere, so the bundled model runs, and the
    note names the cache and the fix (it went on to download and stopped with exit 10)."""
    (tmp_path / "file").write_bytes(b"")
    env = {**offline_env, "HF_TOKEN": "hf_vbg_test", "HF_HOME": str(tmp_path / "file" / "hf")}
    proc = run_vbg("segment", str(PHOTO), "-o", str(tmp_path / "m.png"), env=env, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "RMBG-1.4 is not available" in ln]
    assert len(notes) == 1, proc.stderr
    assert f"the Hugging Face cache {tmp_path / 'file' / 'hf' / 'hub'} cannot take it" in notes[0], notes[0]
    assert "set HF_HOME to a writable folder with room for it" in notes[0]


@pytest.mark.parametrize("endpoint", ["http://[bad", "http://localhost:notaport", "huggingface.example"])
def test_a_malformed_hf_endpoint_is_one_line_or_a_note(tmp_path, offline_env, endpoint):
    """HF_ENDPOINT that is no URL (huggingface_hub's own import fails on some): --model rmbg-1.4
    stops with one line naming it (a traceback, or "no token set" with a token set); no model
    chosen, the bundled one runs with a note saying why."""
    env = {**offline_env, "HF_TOKEN": "hf_vbg_test", "HF_ENDPOINT": endpoint}
    proc = run_vbg("segment", str(PHOTO), "--model", "rmbg-1.4", "-o", str(tmp_path / "m.png"), env=env)
    line = _one_line_error(proc)
    assert proc.returncode == 5 and f"HF_ENDPOINT={endpoint!r} is not a URL to download from" in line, line
    proc = run_vbg("segment", str(PHOTO), "-o", str(tmp_path / "m.png"), env=env, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "RMBG-1.4 is not available (HF_ENDPOINT is not a URL)" in proc.stderr, proc.stderr


@pytest.mark.parametrize("token", ["hf_\u00fc", "\u201chf_x\u201d", "hf_x\u200b"])
def test_a_token_with_a_character_no_token_has_is_one_line(tmp_path, offline_env, token):
    """A token pasted with typographic quotes or an invisible character crashed in the HTTP client
    (UnicodeEncodeError, a traceback), with or without --model."""
    env = {**offline_env, "HF_TOKEN": token}
    proc = run_vbg("segment", str(PHOTO), "--model", "rmbg-1.4", "-o", str(tmp_path / "m.png"), env=env)
    line = _one_line_error(proc)
    assert proc.returncode == 6 and "the Hugging Face token holds a character no token has" in line, line
    assert token not in proc.stderr  # never shown
    proc = run_vbg("segment", str(PHOTO), "-o", str(tmp_path / "m.png"), env=env, timeout=300)
    assert proc.returncode == 0 and "RMBG-1.4 is not available (the Hugging Face token is malformed)" in proc.stderr


@pytest.mark.parametrize("kind", ["unreadable .onnx", "unreadable .safetensors", "FIFO"])
def test_a_model_file_that_cannot_be_read_is_said_as_such(tmp_path, kind):
    """--model naming a file the user cannot read (another user's, mode 0600): one line saying
    so, exit 4. A .safetensors one was a PermissionError traceback; an .onnx one was called
    "damaged, truncated or not an ONNX model" (download it again). A named pipe was said not to
    exist. As root, vbg runs without root's capabilities (``setpriv``) so that the mode holds."""
    import os
    import shutil
    import subprocess
    import sys

    from vbg.models.spec import get_spec

    prefix: list[str] = []
    if kind == "FIFO":
        model = tmp_path / "pipe.onnx"
        os.mkfifo(model)
        said = f"model file {model} is a FIFO (named pipe), not a file"
    else:
        model = tmp_path / ("m.onnx" if kind.endswith(".onnx") else "m.safetensors")
        shutil.copy(get_spec("selfie").bundled_path(), model)  # its bytes do not matter: never read
        said = f"cannot read the model file {model} (Permission denied): make it readable to you"
        prefix = unreadable_to_child(model)
    proc = subprocess.run([*prefix, sys.executable, "-m", "vbg", "segment", str(PHOTO), "--model", str(model),
                           "-o", str(tmp_path / "m.png")], capture_output=True, text=True, timeout=120)
    line = _one_line_error(proc)
    assert proc.returncode == 4 and said in line, line


def test_a_folder_or_a_file_of_random_bytes_as_model_is_said_as_such(tmp_path):
    """--model naming a folder said "does not exist"; a .pth of random bytes was called one that
    "holds Python objects or code" (which is what a pickle with a class in it is told)."""
    (tmp_path / "dir.onnx").mkdir()
    proc = run_vbg("segment", str(PHOTO), "--model", str(tmp_path / "dir.onnx"), "-o", str(tmp_path / "m.png"))
    assert proc.returncode == 4 and "dir.onnx is a folder: give the model file in it" in _one_line_error(proc)
    pytest.importorskip("torch", reason=f"reading a .pth {TORCH_EXTRA}")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(1000))
    proc = run_vbg("segment", str(PHOTO), "--model", str(garbage), "-o", str(tmp_path / "m.png"))
    line = _one_line_error(proc)
    assert proc.returncode == 4 and "garbage.pth: the file is damaged or not a checkpoint of tensors" in line, line


def test_corrupt_onnx_is_one_line_and_exit_4(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    proc = run_vbg("segment", str(PHOTO), "--model", str(bad), "-o", str(tmp_path / "m.png"))
    assert proc.returncode == 4
    assert "broken.onnx" in _one_line_error(proc)


def test_wrongly_shaped_onnx_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx", reason=f"building the test graph {TORCH_EXTRA}")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    proc = run_vbg("segment", str(PHOTO), "--model", str(path), "-o", str(tmp_path / "m.png"))
    assert proc.returncode == 4
    assert "[N,3,H,W]" in _one_line_error(proc)


@pytest.mark.parametrize("args,code,needle", [
    (["--model", "rmbg-9"], 2, "unknown model"),
    (["--model", "selfie", "--size", "512"], 2, "fixed at 256x256"),
    (["--model", "selfie", "--size", "huge"], 2, "--size"),
    (["--model", "no/such/file.onnx"], 4, "does not exist"),
])
def test_bad_options_exit_cleanly(tmp_path, args, code, needle):
    proc = run_vbg("segment", str(PHOTO), *args, "-o", str(tmp_path / "m.png"))
    assert proc.returncode == code, proc.stderr
    assert needle in _one_line_error(proc)


def test_missing_image_fails_but_others_are_written(tmp_path):
    out = tmp_path / "out"
    proc = run_vbg("segment", str(tmp_path / "nope.jpg"), str(PHOTO), "--model", "selfie", "-o", str(out))
    assert proc.returncode == 1
    assert "nope.jpg does not exist" in _one_line_error(proc)
    assert (out / f"{PHOTO.stem}.png").is_file()


def test_existing_output_is_not_overwritten(tmp_path):
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"precious")
    proc = run_vbg("segment", str(PHOTO), "--model", "selfie", "-o", str(mask))
    assert proc.returncode == 10 and "--overwrite" in _one_line_error(proc)
    assert mask.read_bytes() == b"precious"
    assert run_vbg("segment", str(PHOTO), "--model", "selfie", "-o", str(mask), "--overwrite").returncode == 0


def test_export_needs_a_weights_source(tmp_path):
    proc = run_vbg("export", "-o", str(tmp_path / "m.onnx"))
    assert proc.returncode == 2 and "--random-init" in proc.stderr


def test_export_from_a_code_holding_pth_is_refused(tmp_path):
    torch = pytest.importorskip("torch", reason=f"writing a .pth and vbg export {TORCH_EXTRA}")

    bad = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(1), "cls": cv2.KeyPoint}, bad)  # a pickled global, not a tensor
    proc = run_vbg("export", "--weights", str(bad), "-o", str(tmp_path / "m.onnx"))
    assert proc.returncode == 4 and "weights_only=True" in _one_line_error(proc)
    assert not (tmp_path / "m.onnx").exists()


@pytest.fixture
def hub(tmp_path):
    from fakehub import FakeHub

    fake = FakeHub().start()
    yield fake
    fake.stop()


def _hub_env(tmp_path, endpoint) -> dict:
    return {"HF_HOME": str(tmp_path / "hf"), "VBG_CACHE_DIR": str(tmp_path / "vbg-cache"),
            "HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_vbg_test", "HF_HUB_OFFLINE": "0"}


def test_gated_model_without_a_token_names_the_licence_and_alternatives(tmp_path, hub):
    proc = run_vbg("segment", str(PHOTO), "--model", "rmbg-1.4", "-o", str(tmp_path / "m.png"),
                   env={**_hub_env(tmp_path, hub.endpoint), "HF_TOKEN": ""}, timeout=300)
    assert proc.returncode == 6
    line = _one_line_error(proc)
    assert "hf auth login" in line and "HF_TOKEN" in line and "--model selfie" in line
    assert "https://huggingface.co/briaai/RMBG-1.4" in line
    assert hub.requests == []  # known without asking the hub


def test_gated_model_refusing_the_token_names_token_and_alternatives(tmp_path, hub):
    hub.fail("briaai/RMBG-1.4", None, 401, "GatedRepo", "Access to model briaai/RMBG-1.4 is restricted.")
    proc = run_vbg("segment", str(PHOTO), "--model", "rmbg-1.4", "-o", str(tmp_path / "m.png"),
                   env=_hub_env(tmp_path, hub.endpoint), timeout=300)
    assert proc.returncode == 6
    line = _one_line_error(proc)
    assert "HF_TOKEN" in line and "--model selfie" in line and "https://huggingface.co/briaai/RMBG-1.4" in line


def test_a_file_that_does_not_match_its_checksum_is_never_used(tmp_path, hub):
    payload = b"not the model" * 100
    hub.serve("briaai/RMBG-1.4", "onnx/model.onnx", payload)
    proc = run_vbg("segment", str(PHOTO), "--model", "rmbg-1.4", "-o", str(tmp_path / "m.png"),
                   env=_hub_env(tmp_path, hub.endpoint), timeout=300)
    assert proc.returncode == 7
    line = _one_line_error(proc)
    assert "176153355" in line and "nothing was downloaded" in line and "--model selfie" in line
    leftovers = [p for p in (tmp_path / "hf").rglob("*") if p.is_file() or p.is_symlink()
                 if "blobs" in p.parts or "snapshots" in p.parts]
    assert leftovers == []  # nothing half-written or wrong left in the hub cache


@pytest.mark.parametrize("argv", [["-v", "process"], ["process"], ["--quiet", "process"]])
def test_global_flags_before_or_after_a_command(tmp_path, argv):
    """The usage line offers `vbg [-q] [-v] COMMAND`: a flag before the command must not send the
    arguments to the live filter's parser, and -v after the command works too."""
    from media import person_clip_frames, write_clip

    clip = write_clip(tmp_path / "in.mp4", [f for f, _ in person_clip_frames(6, (72, 128))], fps=30)
    extra = [] if argv[0] != "process" else ["-v"]
    proc = run_vbg(*argv, str(clip), "-o", str(tmp_path / "out.mp4"), "--model", "selfie", *extra)
    assert proc.returncode == 0, proc.stderr
    assert "unrecognized" not in proc.stderr
    if "-v" in argv or extra:
        assert "providers in use" in proc.stderr  # a debug message
    else:
        assert "worker(s)" not in proc.stderr  # --quiet: no info messages either


def test_segment_to_a_name_near_the_length_limit(tmp_path):
    """Outputs are written under a temporary name and renamed: that name must fit where the output fits."""
    out = tmp_path / ("m" * 250 + ".png")
    proc = run_vbg("segment", str(PEOPLE / "example03_background01.jpg"), "-o", str(out), "--model", "selfie")
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED) is not None
