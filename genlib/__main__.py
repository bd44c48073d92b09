"""genlib's command line: inspect, download and run models.

    python -m genlib info faces
    python -m genlib generate face --n 16 --seed 0 --out faces/
    python -m genlib generate text --prompt "Once upon a time" --max-new-tokens 100 --seed 0
    python -m genlib pull HuggingFaceTB/SmolLM2-135M-Instruct@main
    python -m genlib serve --replicas 2      # Ray Serve deployments for `python app.py --ray auto`

REF is an embedded model name (faces, landscapes, stories), a local folder, or a Hub repo id with an
optional revision (owner/name@branch, @tag or @40-hex-commit). Exit codes: 0 ok, 1 model or runtime
error (one line; --debug for the traceback), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from genlib.errors import BadInput, GenlibError

TASK_OF_KIND = {"face": "faces", "landscape": "landscapes", "text": "text"}
DEFAULT_MODEL = {"face": "faces", "landscape": "landscapes", "text": "stories"}


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m genlib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="print a model's architecture, size, revision and card as JSON")
    p.add_argument("ref", metavar="REF")
    p = sub.add_parser("pull", help="download a Hub model into the local cache (with a progress bar)")
    p.add_argument("ref", metavar="REF")

    p = sub.add_parser("generate", help="generate faces, landscapes or text")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in ("face", "landscape"):
        k = kinds.add_parser(kind, help=f"write {kind} PNGs (with provenance metadata) to --out")
        k.add_argument("--model", default=DEFAULT_MODEL[kind], metavar="REF")
        k.add_argument("--n", type=int, default=16, help="number of images (image i uses seed + i)")
        k.add_argument("--seed", type=int, default=0)
        k.add_argument("--out", type=Path, required=True, help="folder; files are 000000.png, 000001.png, ...")
        if kind == "face":
            k.add_argument("--truncation", type=float, default=1.0, help="ψ in [0, 1]; lower = closer to the mean face")
        else:
            k.add_argument("--temperature", type=float, default=1.0, help="scale of the prior's noise")
        _model_args(k)
    k = kinds.add_parser("text", help="print a continuation of --prompt")
    k.add_argument("--model", default=DEFAULT_MODEL["text"], metavar="REF")
    k.add_argument("--prompt", required=True)
    k.add_argument("--max-new-tokens", type=int, default=100)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    k.add_argument("--top-k", type=int, default=None)
    k.add_argument("--top-p", type=float, default=None)
    k.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    _model_args(k)

    p = sub.add_parser("info-image", help="read a PNG's provenance and check its C2PA content credentials")
    p.add_argument("file", type=Path)
    p = sub.add_parser("make-cert", help="create a local self-signed C2PA signing chain (demo: not a trusted signer)")
    p.add_argument("dir", type=Path)
    p.add_argument("--force", action="store_true", help="replace an existing key.pem")
    p = sub.add_parser("convert-gguf", help="convert a llama-architecture GGUF file into a Hub-layout folder")
    p.add_argument("file", type=Path)
    p.add_argument("out_dir", type=Path)
    p = sub.add_parser("eval-text", help="bits per byte of a text model on a text file")
    p.add_argument("--model", default=DEFAULT_MODEL["text"], metavar="REF")
    p.add_argument("--file", type=Path, required=True)
    _model_args(p)
    p = sub.add_parser("serve", help="start the Ray Serve deployments on a running Ray cluster (requirements-ray.txt)")
    p.add_argument("--address", default="auto", help="Ray cluster: auto, HOST:6379 or ray://HOST:10001")
    p.add_argument("--replicas", type=int, default=1, help="replicas per model family")
    p.add_argument("--cpus-per-replica", type=float, default=1.0)
    p.add_argument("--gpus-per-replica", type=float, default=0.0)
    p.add_argument("--max-batch", type=int, default=16, help="face requests batched into one forward pass")
    return parser


def cmd_info(ref: str) -> dict[str, Any]:
    """Architecture, size and revision from config + safetensors header, without loading tensors."""
    from huggingface_hub import ModelCard
    from safetensors import safe_open

    from genlib.hub import resolve
    from genlib.loading import build_meta, check_weights

    src = resolve(ref)
    model = build_meta(src.path)
    weights = src.path / "model.safetensors"
    check_weights(model, weights)
    with safe_open(str(weights), framework="pt") as f:
        dtypes = sorted({f.get_slice(k).get_dtype() for k in f.keys()})
    card: dict[str, Any] = {}
    if (src.path / "README.md").is_file():
        mc = ModelCard.load(src.path / "README.md")
        paras = [p.strip() for p in mc.text.split("\n\n") if p.strip() and not p.lstrip().startswith(("#", "!", "<"))]
        card = {"metadata": mc.data.to_dict(), "summary": paras[0] if paras else ""}
    return {
        "ref": ref,
        "source": src.kind,
        "repo_id": src.repo_id,
        "revision": src.revision,
        "path": str(src.path),
        "architecture": model.model_type,
        "task": model.task,
        "parameters": model.num_parameters(),
        "dtype": ",".join(dtypes),
        "size_bytes": weights.stat().st_size,
        "card": card,
    }


def cmd_generate_images(args: argparse.Namespace) -> None:
    from genlib.images import provenance, save_png
    from genlib.store import ModelStore

    model = ModelStore().get(args.model, task=TASK_OF_KIND[args.kind], dtype=args.dtype, device=args.device)
    if args.kind == "face":
        settings = {"truncation": args.truncation}
        images = model.generate(args.n, seed=args.seed, truncation=args.truncation)
    else:
        settings = {"temperature": args.temperature}
        images = model.generate(args.n, seed=args.seed, temperature=args.temperature)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        save_png(im, args.out / f"{i:06d}.png", provenance(model, seed=args.seed + i, dtype=args.dtype, **settings))
    print(f"wrote {len(images)} images to {args.out}", file=sys.stderr)


def cmd_generate_text(args: argparse.Namespace) -> None:
    from genlib.store import ModelStore

    model = ModelStore().get(args.model, task="text", dtype=args.dtype, device=args.device)
    kwargs = dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if args.chat:
        prompt = model.apply_chat_template([{"role": "user", "content": args.prompt}])
    else:
        prompt = args.prompt
        sys.stdout.write(args.prompt)
    for piece in model.stream(prompt, **kwargs):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def cmd_info_image(path: Path) -> dict[str, Any]:
    from genlib.credentials import verify
    from genlib.images import describe_provenance, read_png_info

    if not path.is_file():
        raise GenlibError(f"{path}: no such file")
    info = {"file": str(path), **describe_provenance(read_png_info(path))}
    return {**info, "content_credentials": verify(path).to_dict()}


def cmd_make_cert(out_dir: Path, force: bool) -> None:
    import shlex

    from genlib.credentials import ENV_CERT, ENV_KEY, ENV_TRUST, make_cert

    cert, key, root = make_cert(out_dir, overwrite=force)
    print(f"export {ENV_CERT}={shlex.quote(str(cert.resolve()))}")
    print(f"export {ENV_KEY}={shlex.quote(str(key.resolve()))}")
    print(
        f"# local demo chain: verifiable, but not from a trusted signer. To accept it as trusted on this machine:\n"
        f"#   export {ENV_TRUST}={shlex.quote(str(root.resolve()))}",
        file=sys.stderr,
    )


def cmd_eval_text(args: argparse.Namespace) -> None:
    from genlib.store import ModelStore
    from genlib.textgen import evaluate_bits_per_byte

    if not args.file.is_file():
        raise GenlibError(f"{args.file}: no such file")
    model = ModelStore().get(args.model, task="text", dtype=args.dtype, device=args.device)
    r = evaluate_bits_per_byte(model, args.file.read_text(encoding="utf-8"))
    print(f"bits per byte: {r['bits_per_byte']:.4f}")
    print(f"tokens: {r['tokens']}  bytes: {r['bytes']}  tokens/s: {r['tokens_per_s']:.1f}  seconds: {r['seconds']:.1f}")


def cmd_pull(ref: str) -> None:
    from genlib.hub import resolve

    src = resolve(ref)
    print(json.dumps({"ref": ref, "repo_id": src.repo_id, "revision": src.revision, "path": str(src.path)}, indent=2))


def run(args: argparse.Namespace) -> None:
    if args.command == "info":
        print(json.dumps(cmd_info(args.ref), indent=2, default=str))
    elif args.command == "pull":
        cmd_pull(args.ref)
    elif args.command == "generate" and args.kind == "text":
        cmd_generate_text(args)
    elif args.command == "generate":
        cmd_generate_images(args)
    elif args.command == "info-image":
        print(json.dumps(cmd_info_image(args.file), indent=2))
    elif args.command == "make-cert":
        cmd_make_cert(args.dir, args.force)
    elif args.command == "convert-gguf":
        from genlib.gguf import convert_gguf

        t = time.time()
        out = convert_gguf(args.file, args.out_dir)
        print(f"wrote {out} in {time.time() - t:.1f}s", file=sys.stderr)
    elif args.command == "eval-text":
        cmd_eval_text(args)
    elif args.command == "serve":
        try:
            from genlib import serve
        except ImportError as e:
            raise BadInput(f"serve needs Ray Serve: pip install -r requirements-ray.txt ({e})") from e
        serve.main(args.address, args.replicas, args.cpus_per_replica, args.max_batch, args.gpus_per_replica)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except GenlibError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, BadInput) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
