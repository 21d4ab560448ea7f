"""ssd/data/download_coco.sh against small files served from 127.0.0.1 (no internet needed)."""

import hashlib
import http.server
import io
import os
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "ssd" / "data" / "download_coco.sh"


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from the server's `root`, honouring `Range: bytes=N-`; records the Range headers."""

    def do_GET(self):
        path = Path(self.server.root) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        header = self.headers.get("Range")
        self.server.ranges.append(header)
        if header:
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "mirror"
    (root / "annotations").mkdir(parents=True)
    (root / "models").mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("annotations/instances_val2017.json", '{"images": [], "annotations": [], "categories": []}')
        z.writestr("annotations/filler.bin", os.urandom(200_000))  # incompressible: a real resume
    (root / "annotations" / "annotations_trainval2017.zip").write_bytes(buf.getvalue())
    (root / "models" / "resnet34-333f7ec4.pth").write_bytes(os.urandom(50_000))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root, httpd.ranges = str(root), []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, root
    httpd.shutdown()


def _run(server, tmp_path, items, tamper=None):
    httpd, root = server
    zip_path = root / "annotations" / "annotations_trainval2017.zip"
    pth = root / "models" / "resnet34-333f7ec4.pth"
    md5 = hashlib.md5(zip_path.read_bytes()).hexdigest()
    sha = hashlib.sha256(pth.read_bytes()).hexdigest()
    if tamper == "md5":
        md5 = "0" * 32
    listing = tmp_path / "list.txt"
    listing.write_text(f"annotations coco annotations/annotations_trainval2017.zip md5 {md5}\n"
                       f"weights torchvision resnet34-333f7ec4.pth sha256 {sha}\n")
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    env = dict(os.environ, COCO_MIRROR=base, TORCHVISION_MIRROR=f"{base}/models", SSD_DOWNLOAD_LIST=str(listing))
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path / "coco"), *items], env=env, capture_output=True,
                          text=True, timeout=60)


def test_download_verifies_and_unpacks(server, tmp_path):
    proc = _run(server, tmp_path, ["annotations", "weights"])
    assert proc.returncode == 0, proc.stderr
    dest = tmp_path / "coco"
    assert (dest / "annotations" / "instances_val2017.json").is_file()
    served = server[1] / "models" / "resnet34-333f7ec4.pth"
    assert (dest / "weights" / "resnet34-333f7ec4.pth").read_bytes() == served.read_bytes()
    again = _run(server, tmp_path, ["annotations", "weights"])
    assert again.returncode == 0 and again.stdout.count("already verified") == 2


def test_download_resumes_a_partial_file(server, tmp_path):
    served = (server[1] / "annotations" / "annotations_trainval2017.zip").read_bytes()
    half = len(served) // 2
    (tmp_path / "coco" / "downloads").mkdir(parents=True)
    (tmp_path / "coco" / "downloads" / "annotations_trainval2017.zip.part").write_bytes(served[:half])
    proc = _run(server, tmp_path, ["annotations"])
    assert proc.returncode == 0, proc.stderr
    assert server[0].ranges == [f"bytes={half}-"]
    assert (tmp_path / "coco" / "downloads" / "annotations_trainval2017.zip").read_bytes() == served
    assert (tmp_path / "coco" / "annotations" / "instances_val2017.json").is_file()


def test_download_stops_on_checksum_mismatch(server, tmp_path):
    proc = _run(server, tmp_path, ["annotations", "weights"], tamper="md5")
    assert proc.returncode == 1
    assert "checksum mismatch for annotations_trainval2017.zip" in proc.stderr
    dest = tmp_path / "coco"
    assert (dest / "downloads" / "annotations_trainval2017.zip.bad").is_file()
    assert not (dest / "annotations").exists()
    assert not (dest / "weights").exists()  # stopped before the next item


def test_download_rejects_an_unknown_item(server, tmp_path):
    proc = _run(server, tmp_path, ["train2018"])
    assert proc.returncode == 2 and "unknown item train2018" in proc.stderr


@pytest.fixture
def coco128_mirror(tmp_path, coco128):
    """A local mirror of the COCO128 repository's files, made from the coco128 excerpt, on 127.0.0.1."""
    root = tmp_path / "coco128-mirror"
    shutil.copytree(coco128 / "annotations", root / "annotations")
    shutil.copytree(coco128 / "train2017", root / "train2017")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root, httpd.ranges = str(root), []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def _coco128(mirror, dest):
    env = dict(os.environ, COCO128_MIRROR=mirror)
    return subprocess.run(["bash", str(SCRIPT), str(dest), "coco128"], env=env, capture_output=True, text=True,
                          timeout=120)


def test_coco128_download_is_byte_identical_and_checked(coco128_mirror, coco128, tmp_path):
    url, _ = coco128_mirror
    proc = _coco128(url, tmp_path / "c128")
    assert proc.returncode == 0, proc.stderr
    assert "129 of 129 files downloaded" in proc.stdout
    for sub in ("annotations", "train2017"):
        for served in (coco128 / sub).iterdir():
            assert (tmp_path / "c128" / sub / served.name).read_bytes() == served.read_bytes(), served.name
    assert not list((tmp_path / "c128").rglob("*.part"))
    again = _coco128(url, tmp_path / "c128")
    assert again.returncode == 0 and "0 of 129 files downloaded" in again.stdout


def test_coco128_download_stops_on_a_changed_file(coco128_mirror, tmp_path):
    url, root = coco128_mirror
    image = root / "train2017" / "000000000009.jpg"
    data = bytearray(image.read_bytes())
    data[1000] ^= 0xFF
    image.write_bytes(bytes(data))
    proc = _coco128(url, tmp_path / "c128")
    assert proc.returncode == 1
    assert "checksum mismatch for train2017/000000000009.jpg" in proc.stderr
    assert (tmp_path / "c128" / "train2017" / "000000000009.jpg.bad").is_file()
    assert not (tmp_path / "c128" / "train2017" / "000000000009.jpg").exists()
