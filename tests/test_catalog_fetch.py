"""The soundscape catalog and `edge-dac data fetch`, on real Debian packages."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge_dac.data.catalog import (
    CatalogRow,
    find_catalog,
    load_catalog,
    read_recording,
    read_recording_bytes,
    recording_path,
    split_archive_path,
)
from edge_dac.data.fetch import fetch
from edge_dac.errors import EdgeDacError

REPO = Path(__file__).resolve().parents[1]
DEB_PACKAGES = ("sound-theme-freedesktop", "openttd-opensfx")  # the .deb files in the soundscape_debs fixture


def rows_of(rows: list[CatalogRow], package: str) -> list[CatalogRow]:
    return [row for row in rows if row.package == package]


# --- catalog -----------------------------------------------------------------------------------------


def test_catalog_rows_are_typed_and_complete():
    rows = load_catalog()
    assert len(rows) == 19_952
    assert {row.split for row in rows} == {"train", "val", "test"}
    assert all(len(row.md5) == 32 and row.sample_rate >= 8000 and row.channels in (1, 2) for row in rows)
    footsteps = [row for row in rows if row.class_name == "footsteps"]
    assert footsteps and all(row.label for row in footsteps)
    assert load_catalog() == rows  # cached copy, same content


def test_find_catalog_error_names_where_it_looked_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_DAC_CATALOG", str(tmp_path / "nope.csv"))
    with pytest.raises(EdgeDacError) as error:
        find_catalog()
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "nope.csv") in message and "EDGE_DAC_CATALOG" in message
    monkeypatch.delenv("EDGE_DAC_CATALOG")
    assert find_catalog() == (REPO.parent / "shared" / "soundscape" / "catalog.csv").resolve()


def test_container_paths_split_at_the_container_not_at_any_separator():
    assert split_archive_path("a/public.zip!audio/You_are_Victorious!.ogg") == (
        "a/public.zip",
        "audio/You_are_Victorious!.ogg",
    )
    assert split_archive_path("p/demo-*.orgue!Bourdon8/030-F#.wav") == ("p/demo-*.orgue", "Bourdon8/030-F#.wav")
    assert split_archive_path("o/opensfx.cat#03_Factory_Whistle.wav") == ("o/opensfx.cat", "03_Factory_Whistle.wav")
    assert split_archive_path("usr/share/sounds/bang!.wav") == ("usr/share/sounds/bang!.wav", None)


# --- fetch ----------------------------------------------------------------------------------------------


def test_small_set_is_fetched_and_every_md5_verifies(soundscape_cache, catalog_rows):
    report = fetch(None, soundscape_cache, catalog=catalog_rows, progress=False, verify=True)
    assert report.ok, report.summary()
    assert report.files_verified == len(catalog_rows) > 1000
    assert sorted(report.skipped) == sorted({row.package for row in catalog_rows}) and not report.fetched


def test_fetch_from_dir_then_resume_skips(tmp_path, soundscape_debs, catalog_rows):
    rows = [row for row in catalog_rows if row.package in DEB_PACKAGES]
    report = fetch(list(DEB_PACKAGES), tmp_path, from_dir=soundscape_debs, catalog=rows, progress=False)
    assert report.ok, report.summary()
    assert sorted(report.fetched) == sorted(DEB_PACKAGES) and report.files_verified == len(rows)
    assert all((tmp_path / "markers" / f"{p}.json").is_file() for p in DEB_PACKAGES)
    assert all(any(soundscape_debs.glob(f"{p}_*.deb")) for p in DEB_PACKAGES)  # --from files are never deleted

    again = fetch(list(DEB_PACKAGES), tmp_path, from_dir=soundscape_debs, catalog=rows, progress=False)
    assert again.ok and not again.fetched and sorted(again.skipped) == sorted(DEB_PACKAGES)


def test_from_dir_alone_fetches_the_packages_found_there(tmp_path, soundscape_debs, catalog_rows):
    report = fetch(None, tmp_path, from_dir=soundscape_debs, catalog=catalog_rows, progress=False)
    assert sorted(report.fetched) == sorted(DEB_PACKAGES) and report.ok


def test_corrupted_file_is_detected_and_fetched_again(tmp_path, soundscape_debs, catalog_rows):
    package = "sound-theme-freedesktop"
    rows = rows_of(catalog_rows, package)
    assert fetch([package], tmp_path, from_dir=soundscape_debs, catalog=rows, progress=False).ok
    victim = recording_path(rows[0], tmp_path)
    victim.write_bytes(victim.read_bytes()[:100])  # truncated: size and mtime change

    report = fetch([package], tmp_path, from_dir=soundscape_debs, catalog=rows, progress=False)
    assert report.fetched == [package] and report.ok
    assert hashlib.md5(victim.read_bytes()).hexdigest() == rows[0].md5


def test_verify_catches_corruption_that_keeps_size_and_mtime(tmp_path, soundscape_debs, catalog_rows):
    package = "openttd-opensfx"
    rows = rows_of(catalog_rows, package)
    assert fetch([package], tmp_path, from_dir=soundscape_debs, catalog=rows, progress=False).ok
    sounds = recording_path(rows[0], tmp_path)  # the .cat file that holds every row of the package
    before = sounds.stat()
    data = bytearray(sounds.read_bytes())
    data[len(data) // 2] ^= 0xFF
    sounds.write_bytes(bytes(data))
    os.utime(sounds, ns=(before.st_atime_ns, before.st_mtime_ns))

    quick = fetch([package], tmp_path, from_dir=soundscape_debs, catalog=rows, progress=False)
    assert quick.skipped == [package]  # by design: a resume only stat()s files
    checked = fetch([package], tmp_path, from_dir=soundscape_debs, catalog=rows, progress=False, verify=True)
    assert checked.fetched == [package] and checked.ok
    assert hashlib.md5(sounds.read_bytes()).hexdigest() != hashlib.md5(bytes(data)).hexdigest()


def test_md5_mismatch_and_missing_file_are_reported(tmp_path, soundscape_debs, catalog_rows):
    package = "sound-theme-freedesktop"
    rows = rows_of(catalog_rows, package)
    bad_md5 = dataclasses.replace(rows[0], md5="0" * 32)
    absent = dataclasses.replace(rows[1], path="usr/share/sounds/not-there.oga")
    report = fetch([package], tmp_path, from_dir=soundscape_debs, catalog=[bad_md5, absent, *rows[2:]], progress=False)
    assert not report.ok
    assert report.mismatched == [f"{package}:{bad_md5.path}"] and report.missing == [f"{package}:{absent.path}"]
    assert report.files_verified == len(rows) - 2
    assert "1 missing, 1 md5 mismatch" in report.summary() and absent.path in report.summary()
    assert not (tmp_path / "markers" / f"{package}.json").exists()  # the next run tries again


def test_unknown_package_is_one_line_listing_valid_names(tmp_path):
    with pytest.raises(EdgeDacError) as error:
        fetch(["no-such-package", "lugaru-data"], tmp_path, progress=False)
    message = str(error.value)
    assert "\n" not in message and "no-such-package" in message and "asterisk-core-sounds-en-wav" in message
    assert "lugaru-data" not in message.split(";")[0]


def test_from_dir_without_the_deb_is_one_line(tmp_path):
    with pytest.raises(EdgeDacError, match=r"no \.deb for lugaru-data") as error:
        fetch(["lugaru-data"], tmp_path / "cache", from_dir=tmp_path, progress=False)
    assert "\n" not in str(error.value)


# --- reading recordings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "package, container",
    [("sound-theme-freedesktop", None), ("ufoai-sound", ".pk3"), ("openttd-opensfx", ".cat")],
)
def test_read_recording_plain_zip_member_and_sound_catalog(soundscape_cache, catalog_rows, package, container):
    row = rows_of(catalog_rows, package)[0]
    assert (row.archive or "").endswith(container or "") and (row.archive is None) == (container is None)
    samples = read_recording(row, soundscape_cache)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / 16_000 - row.duration_s) < 0.01
    assert np.abs(samples).max() > 0.01
    assert hashlib.md5(read_recording_bytes(row, soundscape_cache)).hexdigest() == row.md5
    assert len(read_recording(row, soundscape_cache, sample_rate=8000)) == pytest.approx(len(samples) / 2, abs=2)


def make_row(path: str, data: bytes, package: str = "fake-pkg", fmt: str = "wav/pcm_16") -> CatalogRow:
    return CatalogRow(
        package, "1.0", path, fmt, 0.5, 44_100, 2, "beep", "beep", "alarm", "sfx", "", "CC0",
        hashlib.md5(data).hexdigest(), "train", "",
    )  # fmt: skip


def stereo_wav(seconds: float = 0.5, rate: int = 44_100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([left, np.zeros_like(left)], axis=1), rate, format="WAV")
    return buffer.getvalue()


def test_globbed_archive_member_is_found_and_checked(tmp_path):
    data = stereo_wav()
    archive = tmp_path / "root" / "fake-pkg" / "packages" / "demo-4232D4C6.orgue"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Pipes/030-F#.wav", data)
    row = make_row("packages/demo-*.orgue!Pipes/030-F#.wav", data)
    assert recording_path(row, tmp_path) == archive
    samples = read_recording(row, tmp_path)
    assert len(samples) == 8000 and np.abs(samples).max() == pytest.approx(0.25, abs=0.01)  # stereo averaged
    report = fetch(["fake-pkg"], tmp_path, catalog=[row], progress=False)  # already unpacked: verified, no download
    assert report.skipped == ["fake-pkg"] and report.files_verified == 1


@pytest.mark.skipif(shutil.which("wavpack") is None, reason="needs the wavpack tools (scripts/setup.sh installs them)")
def test_wavpack_member_is_decoded(tmp_path):
    """GrandOrgue ships WavPack samples named .wav; libsndfile cannot read them, wvunpack can."""
    (tmp_path / "in.wav").write_bytes(stereo_wav())
    subprocess.run(["wavpack", "-q", str(tmp_path / "in.wav"), "-o", str(tmp_path / "in.wv")], check=True)
    data = (tmp_path / "in.wv").read_bytes()
    archive = tmp_path / "root" / "fake-pkg" / "demo.orgue"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Bourdon8/030-F#.wav", data)
    samples = read_recording(make_row("demo.orgue!Bourdon8/030-F#.wav", data, fmt="wavpack"), tmp_path)
    assert len(samples) == 8000 and np.abs(samples).max() == pytest.approx(0.25, abs=0.01)


def test_missing_recording_names_the_fetch_command(tmp_path, catalog_rows):
    row = rows_of(catalog_rows, "lugaru-data")[0]
    with pytest.raises(EdgeDacError) as error:
        read_recording(row, tmp_path)
    assert "\n" not in str(error.value) and "edge-dac data fetch --packages lugaru-data" in str(error.value)


# --- command line -------------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_dac", "data", "fetch", *args], capture_output=True, text=True, cwd=REPO
    )


def test_cli_fetch_downloads_unpacks_and_verifies(tmp_path):
    result = run_cli("--packages", "sound-theme-freedesktop", "--cache", str(tmp_path))
    if "apt-get update" in result.stderr and os.geteuid() == 0:  # a fresh machine: lists not downloaded yet
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        result = run_cli("--packages", "sound-theme-freedesktop", "--cache", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "1 fetched" in result.stdout and "10 verified, 0 missing, 0 md5 mismatch" in result.stdout
    assert (tmp_path / "markers" / "sound-theme-freedesktop.json").is_file()
    assert not any((tmp_path / "debs").glob("*.deb"))  # unpacked and verified: the .deb is dropped


def test_cli_unknown_package_prints_one_line_and_exits_2(tmp_path):
    result = run_cli("--packages", "no-such-package", "--cache", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "no-such-package" in result.stderr
