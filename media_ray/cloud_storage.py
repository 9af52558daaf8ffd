"""Objects in cloud storage, read as videos and written as output folders, chosen by URI scheme.

`gs://BUCKET/OBJECT` names a Google Cloud Storage object and `gs://BUCKET/PREFIX/` a folder of
them. `OBJECT_STORES` maps a scheme to the class that speaks to its store (adding a store is
adding an entry); `store_for(uri)` gives the store of a URI, None for a local path.

What callers may rely on:

- Reading (`open_object`, which `media_ray.sources.open_source` calls for the `gs` source kind)
  goes through the store's own client: an authorised, seekable read of the object in ranges,
  never through the http source kind, its FFmpeg protocols or the API's source policy (which
  refuses `gs://`: an API user may not read buckets with the server's credentials).
- Credentials are Google's usual ones: Application Default Credentials
  (`GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth application-default login`, a service account
  on GCE/GKE) and the project of `GOOGLE_CLOUD_PROJECT`; with `STORAGE_EMULATOR_HOST` set the
  client talks to that emulator, anonymously.
- Whatever fails (no such bucket or object, no credentials, access denied, the library missing)
  raises `StorageError`, a `SourceError`, whose one line says which URI and why.
- `OutputFolder(target)` is where an analysis writes: a local folder as it is, or a local
  temporary folder whose files are uploaded under the prefix (`upload`, and on a clean exit).
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlparse

from media_ray.sources import VIDEO_SUFFIXES, SourceError

log = logging.getLogger(__name__)

#: bytes fetched per ranged read of an object: a probe reads a little of a large recording, a
#: decode streams it in these steps
READ_CHUNK_BYTES = 8 * 1024 * 1024


class StorageError(SourceError):
    """An object or bucket that cannot be read or written; the message names it and says why."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object: its URI, size and version (GCS: the generation, new at every write)."""

    uri: str
    size: int
    version: str


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, object name or prefix) of `SCHEME://BUCKET/NAME`."""
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise StorageError(f"{uri}: no bucket named (expected {parsed.scheme}://BUCKET/NAME)")
    return parsed.netloc, parsed.path.lstrip("/")


def join_uri(prefix: str, relative: str) -> str:
    """`relative` (a POSIX path) under the folder `prefix` names (with or without its last `/`)."""
    return prefix.rstrip("/") + "/" + relative.lstrip("/")


class GcsStore:
    """Google Cloud Storage through `google-cloud-storage` (the `gcp` extra)."""

    scheme = "gs"

    def __init__(self) -> None:
        try:
            self.exceptions = importlib.import_module("google.api_core.exceptions")
            self.auth_exceptions = importlib.import_module("google.auth.exceptions")
        except ImportError:
            raise StorageError("gs:// needs google-cloud-storage: pip install 'media-ray[gcp]'") from None

    def client(self, uri: str):
        try:
            return _gcs_client()
        except ImportError:
            raise StorageError(f"{uri}: gs:// needs google-cloud-storage: pip install 'media-ray[gcp]'") from None
        except self.auth_exceptions.DefaultCredentialsError:
            raise StorageError(
                f"{uri}: no Google Cloud credentials (set GOOGLE_APPLICATION_CREDENTIALS, or run "
                "`gcloud auth application-default login`)"
            ) from None

    def _error(self, uri: str, e: Exception, bucket: str) -> StorageError:
        """The one line a failed call means."""
        if isinstance(e, StorageError):
            return e
        if isinstance(e, self.exceptions.NotFound):
            return StorageError(f"{uri}: {self._missing(uri, bucket)}")
        if isinstance(e, self.exceptions.Forbidden | self.exceptions.Unauthorized):
            return StorageError(f"{uri}: access denied ({_first_line(e)}): check the credentials' roles")
        if isinstance(e, self.auth_exceptions.GoogleAuthError):
            return StorageError(f"{uri}: Google Cloud credentials refused ({_first_line(e)})")
        return StorageError(f"{uri}: cloud storage failed ({type(e).__name__}: {_first_line(e)})")

    def _missing(self, uri: str, bucket: str) -> str:
        try:
            found = self.client(uri).lookup_bucket(bucket)
        except Exception:  # the first error is the one to report
            found = True
        return f"no such bucket {bucket!r}" if found is None else "no such object"

    def _blob(self, uri: str):
        bucket, name = split_uri(uri)
        if not name or name.endswith("/"):
            raise StorageError(f"{uri}: names a folder, not an object")
        try:
            blob = self.client(uri).bucket(bucket).get_blob(name)
        except Exception as e:
            raise self._error(uri, e, bucket) from None
        if blob is None:
            raise StorageError(f"{uri}: {self._missing(uri, bucket)}")
        return blob

    def stat(self, uri: str) -> ObjectInfo:
        blob = self._blob(uri)
        return ObjectInfo(uri, int(blob.size or 0), str(blob.generation))

    def open(self, uri: str) -> IO[bytes]:
        """A seekable reader of the object as it is now (its generation), read in ranges."""
        blob = self._blob(uri)
        return blob.open("rb", chunk_size=READ_CHUNK_BYTES)

    def list(self, prefix_uri: str, suffixes: tuple[str, ...] = VIDEO_SUFFIXES) -> list[ObjectInfo]:
        """The objects directly under a folder (not in its sub-folders) whose names end in one of
        `suffixes`, in name order."""
        bucket, prefix = split_uri(prefix_uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        try:
            blobs = list(self.client(prefix_uri).list_blobs(bucket, prefix=prefix, delimiter="/"))
        except Exception as e:
            raise self._error(prefix_uri, e, bucket) from None
        return sorted(
            (
                ObjectInfo(f"{self.scheme}://{bucket}/{b.name}", int(b.size or 0), str(b.generation))
                for b in blobs
                if PurePosixPath(b.name).suffix.lower() in suffixes
            ),
            key=lambda o: o.uri,
        )

    def check_folder(self, prefix_uri: str) -> None:
        """That the bucket of a folder exists (what the credentials may write shows at the upload)."""
        bucket, _ = split_uri(prefix_uri)
        try:
            found = self.client(prefix_uri).lookup_bucket(bucket)
        except Exception as e:
            raise self._error(prefix_uri, e, bucket) from None
        if found is None:
            raise StorageError(f"{prefix_uri}: no such bucket {bucket!r}")

    def upload(self, path: Path, uri: str, content_type: str | None = None) -> None:
        bucket, name = split_uri(uri)
        try:
            self.client(uri).bucket(bucket).blob(name).upload_from_filename(str(path), content_type=content_type)
        except Exception as e:
            raise self._error(uri, e, bucket) from None

    def upload_bytes(self, data: bytes, uri: str, content_type: str, cache_control: str | None = None) -> None:
        """`data` as the object `uri`; `cache_control` for what changes under one name (a live playlist)."""
        bucket, name = split_uri(uri)
        try:
            blob = self.client(uri).bucket(bucket).blob(name)
            blob.cache_control = cache_control
            blob.upload_from_string(data, content_type=content_type)
        except Exception as e:
            raise self._error(uri, e, bucket) from None

    def download(self, uri: str, path: Path) -> bool:
        """The object into `path`; False (and nothing written) when there is no such object."""
        bucket, name = split_uri(uri)
        try:
            blob = self.client(uri).bucket(bucket).get_blob(name)
            if blob is None:
                return False
            blob.download_to_filename(str(path))
        except Exception as e:
            raise self._error(uri, e, bucket) from None
        return True


@lru_cache(maxsize=1)
def _gcs_client():
    """One client a process (it keeps its HTTP connections); the project from the environment."""
    from google.cloud import storage

    return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


#: URI scheme -> "module:Class" of its store, imported only when a URI of it is used
OBJECT_STORES: dict[str, str] = {"gs": "media_ray.cloud_storage:GcsStore"}


def store_for(uri: str | os.PathLike) -> Any | None:
    """The store that holds `uri` (a `GcsStore` for `gs://`), None for a local path."""
    text = str(uri)
    scheme = urlparse(text).scheme.lower() if "://" in text else ""
    target = OBJECT_STORES.get(scheme)
    if target is None:
        return None
    return _store(target)


@cache
def _store(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)()


def open_object(uri: str) -> IO[bytes]:
    """A seekable reader of the object `uri` names (the `opener` of its source kind)."""
    store = store_for(uri)
    if store is None:
        raise StorageError(f"{uri}: not an object-store URI ({', '.join(f'{s}://' for s in OBJECT_STORES)})")
    return store.open(uri)


class OutputFolder:
    """Where results go: `path` is a local folder to write in; for an object-store `target` it is
    a temporary folder, and `upload()` copies what is under it (or under one of its sub-folders)
    to the same names under the prefix. Used as a context manager, a clean exit uploads
    everything and the temporary folder goes; an exception uploads nothing more.

    An object-store target's bucket is checked when the folder is made (StorageError)."""

    def __init__(self, target: str | os.PathLike):
        self.target = str(target)
        self.store = store_for(self.target)
        self._tmp: tempfile.TemporaryDirectory | None = None
        #: URIs of the files uploaded so far
        self.uploaded: list[str] = []
        self._sent: dict[Path, tuple[int, int]] = {}  # what was uploaded of each file: size, mtime
        if self.store is None:
            self.path = Path(self.target)
            return
        self.store.check_folder(self.target)
        self._tmp = tempfile.TemporaryDirectory(prefix="media-ray-out-")
        self.path = Path(self._tmp.name)

    @property
    def remote(self) -> bool:
        return self.store is not None

    def uri_of(self, local: Path) -> str:
        """What a file or folder under `path` is called at the target."""
        relative = local.relative_to(self.path).as_posix()
        if not self.remote:
            return str(local)
        return self.target if relative == "." else join_uri(self.target, relative)

    def fetch(self, name: str) -> Path | None:
        """A file of the target folder, brought into `path` (a remote target), or None when it is
        not there."""
        local = self.path / name
        if self.store is None:
            return local if local.exists() else None
        local.parent.mkdir(parents=True, exist_ok=True)
        return local if self.store.download(join_uri(self.target, name), local) else None

    def upload(self, under: str | Path = ".") -> list[str]:
        """Upload the files under `path / under` that are new or changed since their last upload
        (a remote target; a local one has them already); returns their URIs."""
        if self.store is None:
            return []
        root = self.path / under
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        uris = []
        for f in files:
            st = f.stat()
            if self._sent.get(f) == (st.st_size, st.st_mtime_ns):
                continue
            uri = self.uri_of(f)
            self.store.upload(f, uri)
            self._sent[f] = (st.st_size, st.st_mtime_ns)
            uris.append(uri)
        log.info("uploaded %d files under %s", len(uris), self.uri_of(root))
        self.uploaded.extend(uris)
        return uris

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None:
                self.upload()
        finally:
            self.close()
