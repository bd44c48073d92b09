"""A small local stand-in for the Hugging Face Hub HTTP API, for tests (not product code).

It speaks the parts of the API that huggingface_hub calls for what genlib uses:

- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: model info with `sha` and `siblings`;
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: the file listing (`list_repo_tree`, `list_repo_files`,
  `snapshot_download`), with `oid`, `size` and `lfs` entries like the Hub's;
- `HEAD`/`GET /{repo}/resolve/{rev}/{file}`: the file, with `X-Repo-Commit`, `ETag`/`X-Linked-Etag`,
  `X-Linked-Size`, `Content-Length` and `Range` support (huggingface_hub resumes interrupted downloads);
- `POST /api/repos/create`, `/api/validate-yaml`, `/api/models/{repo}/preupload/{rev}` and
  `/api/models/{repo}/commit/{rev}`: enough for `create_repo` + `upload_folder`, i.e. `push_to_hub`
  (every file is declared "regular", so its content travels base64 in the commit, no LFS upload);
- errors as the Hub sends them: `X-Error-Code: RepoNotFound` (401 without a token, like the Hub),
  `RevisionNotFound`, `EntryNotFound` (with `X-Repo-Commit`), `GatedRepo` (401 without a token, 403 with a
  token that was not granted access) and private repos that look missing without a granted token.

A repo has branches and commits; a commit is a snapshot of a folder (or of a name -> bytes dict) with a
deterministic 40-hex sha, so tests can pin a revision by sha or by branch.

Misbehaviour on demand, per test: `hub.misbehave(kind, ...)` with kind one of

- "error500": answer HTTP 500 (all requests, or those whose path matches `path`);
- "slow": sleep `delay` seconds before answering (longer than the client timeout);
- "drop": send the headers and part of a file, then close the connection;
- "truncate": send a shorter file, with a Content-Length that matches the short body;
- "corrupt": send the file with some of its bytes changed (same length, same headers);

`times=N` limits a fault to its first N matching requests. `hub.heal()` ends it; `hub.stop()` and
`hub.start()` take the server down and back up on the same port.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".gguf", ".h5", ".msgpack")
FAULT_KINDS = ("error500", "slow", "drop", "truncate", "corrupt")
_DATE = "2025-01-01T00:00:00.000Z"


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 of `data`, which the Hub reports as `oid` / `blobId`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


def read_folder(folder: Path) -> dict[str, bytes]:
    """All files under `folder`, as repo path -> bytes."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    gated: bool = False
    private: bool = False
    tokens: set[str] = field(default_factory=set)  # tokens granted access (gated or private repos)
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        if rev in self.branches:
            return self.commits[self.branches[rev]]
        return self.commits.get(rev)


@dataclass
class Fault:
    kind: str
    path: str = "*"  # fnmatch pattern on the URL path (for "error500" and "slow")
    file: str = "*.safetensors"  # fnmatch pattern on the file name (for "drop", "truncate" and "corrupt")
    delay: float = 30.0
    times: int | None = None  # None: until healed
    hits: int = 0


class HubServer:
    """The fake Hub: repos, a request log and a fault switch, served on 127.0.0.1."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received
        self.fault: Fault | None = None
        self._lock = threading.RLock()
        self._wake = threading.Event()  # set on stop(): wakes up "slow" handlers
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    # ----- lifecycle -----
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> HubServer:
        if self._httpd is not None:
            return self
        self._wake.clear()
        httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
        httpd.daemon_threads = True
        httpd.hub = self  # type: ignore[attr-defined]
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection: clients now get 'connection refused'."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._wake.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- faults -----
    def misbehave(self, kind: str, **options: object) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; use one of {FAULT_KINDS}")
        with self._lock:
            self.fault = Fault(kind, **options)  # type: ignore[arg-type]

    def heal(self) -> None:
        with self._lock:
            self.fault = None

    def _take_fault(self, kinds: tuple[str, ...], path: str, file: str | None) -> Fault | None:
        with self._lock:
            f = self.fault
            if f is None or f.kind not in kinds:
                return None
            if file is None and not fnmatch.fnmatch(path, f.path):
                return None
            if file is not None and not fnmatch.fnmatch(file, f.file):
                return None
            f.hits += 1
            if f.times is not None and f.hits >= f.times:
                self.fault = None
            return f

    # ----- repos -----
    def add_repo(
        self,
        repo_id: str,
        files: Path | dict[str, bytes] | None = None,
        *,
        branch: str = "main",
        gated: bool = False,
        private: bool = False,
        tokens: set[str] | None = None,
    ) -> str:
        """Create a repo (with a .gitattributes commit, like the Hub) and commit `files` on `branch`; return its sha."""
        with self._lock:
            if repo_id in self.repos:
                raise ValueError(f"{repo_id} exists")
            self.repos[repo_id] = Repo(repo_id, gated=gated, private=private, tokens=set(tokens or ()))
            sha = self.commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            if files is not None:
                sha = self.commit(repo_id, files, branch=branch, replace=True)
            return sha

    def commit(
        self,
        repo_id: str,
        files: Path | dict[str, bytes],
        *,
        branch: str = "main",
        message: str = "update",
        replace: bool = False,
        delete: tuple[str, ...] = (),
    ) -> str:
        """Commit `files` (a folder or a dict) on `branch` (created from main if new); return the commit sha.

        With `replace`, the commit holds exactly `files` (plus .gitattributes); otherwise they are added to
        (or overwrite) the branch head's files.
        """
        new = read_folder(files) if isinstance(files, Path) else dict(files)
        with self._lock:
            repo = self.repos[repo_id]
            head_sha = repo.branches.get(branch) or repo.branches.get("main")
            head = repo.commits[head_sha].files if head_sha else {}
            if replace:
                base = {k: v for k, v in head.items() if k == ".gitattributes"}
            else:
                base = {k: v for k, v in head.items() if k not in delete}
            content = {**base, **new}
            h = hashlib.sha1(f"commit\0{repo_id}\0{head_sha}\0{message}\0".encode())
            for path in sorted(content):
                h.update(f"{path}\0{git_blob_oid(content[path])}\0".encode())
            sha = h.hexdigest()
            repo.commits[sha] = Commit(sha, head_sha, message, content)
            repo.branches[branch] = sha
            return sha

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        commit = self.repos[repo_id].resolve(rev)
        assert commit is not None, f"{repo_id} has no revision {rev}"
        return commit.files

    def downloads(self, file: str = "*") -> list[str]:
        """Paths of the GET /resolve requests received so far whose file matches `file`."""
        with self._lock:
            log = list(self.requests)
        return [p for m, p in log if m == "GET" and "/resolve/" in p and fnmatch.fnmatch(p.rsplit("/", 1)[-1], file)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakehub/1.0"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._conns.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # ----- plumbing -----
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        h = {"X-Error-Message": message, **(headers or {})}
        if code:
            h["X-Error-Code"] = code
        self._json(status, {"error": message}, h)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:] if auth.lower().startswith("bearer ") else None

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        url = urlsplit(self.path)
        with hub._lock:
            hub.requests.append((method, url.path))
        body = self._body() if method == "POST" else b""
        if (f := hub._take_fault(("slow",), url.path, None)) is not None:
            hub._wake.wait(f.delay)
            if not hub.running:
                self.close_connection = True
                return
        if hub._take_fault(("error500",), url.path, None) is not None:
            self._error(500, "Internal Error - We're working hard to fix this as soon as possible!")
            return
        seg = [unquote(s) for s in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if seg[:2] == ["api", "models"] and len(seg) >= 4:
                self._api_models(method, "/".join(seg[2:4]), seg[4:], query, body)
            elif seg[:3] == ["api", "repos", "create"] and method == "POST":
                self._create_repo(json.loads(body or b"{}"))
            elif seg[:2] == ["api", "validate-yaml"] and method == "POST":
                self._json(200, {"errors": [], "warnings": []})
            elif len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
                self._resolve(method, "/".join(seg[:2]), seg[3], "/".join(seg[4:]))
            else:
                self._error(404, "Not Found")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ----- access -----
    def _repo_or_error(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        token = self._token()
        if repo is None or (repo.private and token not in repo.tokens):
            # The Hub answers 401 to anonymous requests for missing (or private) repos, 404 with a token.
            status = 404 if token else 401
            self._error(status, "Repository not found", "RepoNotFound")
            return None
        return repo

    def _commit_or_error(self, repo: Repo, rev: str) -> Commit | None:
        commit = repo.resolve(rev)
        if commit is None:
            self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    # ----- API -----
    def _api_models(self, method: str, repo_id: str, rest: list[str], query: dict[str, str], body: bytes) -> None:
        if method == "POST" and len(rest) >= 2 and rest[0] in ("preupload", "commit"):
            repo = self._repo_or_error(repo_id)
            if repo is not None:
                (self._preupload if rest[0] == "preupload" else self._commit)(repo, "/".join(rest[1:]), body)
            return
        if method != "GET":
            self._error(405, "Method not allowed")
            return
        repo = self._repo_or_error(repo_id)
        if repo is None:
            return
        if not rest or (rest[0] == "revision" and len(rest) >= 2):
            commit = self._commit_or_error(repo, "/".join(rest[1:]) if rest else "main")
            if commit is not None:
                self._json(200, self._model_info(repo, commit, blobs=query.get("blobs") in ("True", "true", "1")))
        elif rest[0] == "tree" and len(rest) >= 2:
            commit = self._commit_or_error(repo, rest[1])
            if commit is not None:
                recursive = query.get("recursive") in ("True", "true", "1")
                self._json(200, _tree(commit, "/".join(rest[2:]), recursive))
        else:
            self._error(404, "Not Found")

    def _model_info(self, repo: Repo, commit: Commit, blobs: bool) -> dict:
        siblings = []
        for path, data in sorted(commit.files.items()):
            s: dict = {"rfilename": path}
            if blobs:
                s.update(size=len(data), blobId=git_blob_oid(data))
                if is_lfs(path):
                    s["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            siblings.append(s)
        owner = repo.repo_id.split("/")[0]
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": owner,
            "sha": commit.sha,
            "lastModified": _DATE,
            "createdAt": _DATE,
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "library_name": "genlib",
            "tags": ["genlib"],
            "siblings": siblings,
        }

    def _create_repo(self, payload: dict) -> None:
        if not self._token():
            self._error(401, "Invalid username or password.")
            return
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        if repo_id in self.hub.repos:
            self._error(409, "You already created this model repo", headers={"X-Repo-Id": repo_id})
            return
        self.hub.add_repo(repo_id, private=bool(payload.get("private")), tokens={self._token() or ""})
        self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _preupload(self, repo: Repo, rev: str, body: bytes) -> None:
        files = json.loads(body)["files"]
        modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]
        self._json(200, {"files": modes, "commitOid": repo.branches.get(rev)})

    def _commit(self, repo: Repo, rev: str, body: bytes) -> None:
        if not self._token():
            self._error(401, "Invalid username or password.")
            return
        added: dict[str, bytes] = {}
        deleted: list[str] = []
        message = "commit"
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary") or message
            elif key == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deleted.append(value["path"])
            else:
                self._error(400, f"unsupported commit operation {key!r} in the test hub")
                return
        sha = self.hub.commit(repo.repo_id, added, branch=rev, message=message, delete=tuple(deleted))
        self._json(
            200,
            {
                "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{sha}",
                "commitOid": sha,
                "pullRequestUrl": None,
                "success": True,
            },
        )

    # ----- files -----
    def _resolve(self, method: str, repo_id: str, rev: str, path: str) -> None:
        repo = self._repo_or_error(repo_id)
        if repo is None:
            return
        commit = self._commit_or_error(repo, rev)
        if commit is None:
            return
        token = self._token()
        if repo.gated and token not in repo.tokens:
            if token:
                msg = f"Access to model {repo_id} is restricted and you are not in the authorized list."
                self._error(403, msg, "GatedRepo")
            else:
                msg = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated."
                self._error(401, msg, "GatedRepo")
            return
        if path not in commit.files:
            self._error(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
            return
        data = commit.files[path]
        lfs = is_lfs(path)
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_oid(data)
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{etag}"',
            "Accept-Ranges": "bytes",
        }
        if lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        if method == "HEAD":
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return
        start = 0
        status = 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            start = int(first or 0)
            end = int(last) if last else len(data) - 1
            if start >= len(data):
                self._error(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data = data[start : end + 1]
            status = 206
        fault = self.hub._take_fault(("drop", "truncate", "corrupt"), "", path.rsplit("/", 1)[-1])
        if fault is not None and fault.kind == "truncate":
            data = data[: len(data) // 2]
            headers.pop("Content-Range", None)
        if fault is not None and fault.kind == "corrupt":
            tail = bytes(b ^ 0xFF for b in data[-64:])
            data = data[:-64] + tail
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault is not None and fault.kind == "drop":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(data)


def _tree(commit: Commit, under: str, recursive: bool) -> list[dict]:
    prefix = under.strip("/") + "/" if under.strip("/") else ""
    entries: dict[str, dict] = {}
    for path, data in sorted(commit.files.items()):
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix) :]
        parts = rel.split("/")
        if len(parts) > 1:
            for i in range(1, len(parts) if recursive else 2):
                d = prefix + "/".join(parts[:i])
                entries.setdefault(
                    d, {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                )
            if not recursive:
                continue
        e: dict = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
        if is_lfs(path):
            e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        entries[path] = e
    return list(entries.values())
