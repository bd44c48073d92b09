"""genlib's Gradio app: faces (GAN), landscapes (VAE) and text (transformer), on the embedded models by default.

    python app.py                 # http://127.0.0.1:7860, offline, embedded models
    python app.py --share         # also a public share link (needs network)
    python app.py --mcp           # also Gradio's MCP server
    python app.py --ray auto      # models on a Ray cluster (`python -m genlib serve` first; needs requirements-ray.txt)

Layout and wiring only: every function here calls genlib.service.LocalService.
"""

from __future__ import annotations

import argparse
import os
import random
import threading

import gradio as gr

from genlib.credentials import credentials_status
from genlib.errors import GenlibError
from genlib.hub import EMBEDDED, WEIGHTS_DIR
from genlib.images import AI_LABEL, read_png_info
from genlib.service import MAX_FRAMES, FaceRequest, LocalService

try:  # ZeroGPU on Hugging Face Spaces: only when the `spaces` package is installed
    import spaces

    on_gpu = spaces.GPU
except ImportError:

    def on_gpu(fn):  # noqa: ANN001, ANN201
        return fn


service = LocalService()
MODEL_LIMIT = dict(concurrency_id="models", concurrency_limit=2, time_limit=180)
MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 512
FACE_BATCH = int(os.environ.get("GENLIB_FACE_BATCH", "16"))  # queued face requests run in one forward pass
N_DIRECTIONS = 6  # direction sliders shown (a model with fewer directions refuses the extra ones clearly)
_stop_flags: dict[str, threading.Event] = {}

CSS = ".ai-label {font-weight: 600; color: #b45309} footer {visibility: hidden}"
THEME = gr.themes.Soft()


def embedded_ready(name: str) -> bool:
    return (WEIGHTS_DIR / EMBEDDED[name] / "model.safetensors").is_file()


def not_ready_note(name: str) -> str:
    if embedded_ready(name):
        return ""
    return f"**The embedded {name} model has not been trained and committed yet.** Enter a Hub repo id to load one."


def one_line(e: Exception) -> gr.Error:
    """Turn a genlib error into the one-line message the user sees."""
    return gr.Error(f"{type(e).__name__}: {e}", print_exception=False)


def captioned(paths) -> list[tuple[str, str]]:  # noqa: ANN001
    """Gallery items with what made each image (model, revision, seed), read back from its PNG."""
    out = []
    for p in paths:
        info = read_png_info(p)
        rev = info.get("revision", "?")
        rev = rev.split(":")[-1][:10] if rev else "?"
        seed = f" · seed {info['seed']}" if "seed" in info else ""
        out.append((str(p), f"{AI_LABEL} · {info.get('model', '?')}@{rev}{seed}"))
    return out


# ----- model pickers -----
def load_model(ref: str, task: str, progress: gr.Progress) -> str:
    progress(0, desc=f"loading {ref}")
    try:
        return "Loaded: " + service.load(ref, task)
    except GenlibError as e:
        raise one_line(e) from e


def load_faces(ref: str, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str:  # noqa: B008
    return load_model(ref, "faces", progress)


def load_landscapes(ref: str, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str:  # noqa: B008
    return load_model(ref, "landscapes", progress)


def load_text(ref: str, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str:  # noqa: B008
    return load_model(ref, "text", progress)


# ----- faces -----
@on_gpu
def generate_faces(models, seeds, ns, truncations, sizes, methods):  # noqa: ANN001
    """Batched: each argument is a list with one entry per queued request (many users, one forward pass).

    A bad request gets an empty gallery without failing the others batched with it; alone, it gets the error.
    """
    reqs = [
        FaceRequest(m, s, n, t, z, me)
        for m, s, n, t, z, me in zip(models, seeds, ns, truncations, sizes, methods, strict=True)
    ]
    errors = [service.check_face_request(r) for r in reqs]
    good = [r for r, e in zip(reqs, errors, strict=True) if e is None]
    if not good:
        raise one_line(errors[0])
    try:
        results = iter(service.faces(good))
    except GenlibError as e:
        raise one_line(e) from e
    return [[captioned(next(results)) if e is None else [] for e in errors]]


@on_gpu
def interpolate_faces(
    model: str, seed_a: float, seed_b: float, frames: float, truncation: float, size: float, method: str
):
    try:
        gif, paths = service.face_interpolation(
            model, int(seed_a), int(seed_b), int(frames), float(truncation), int(size), method
        )
    except GenlibError as e:
        raise one_line(e) from e
    return str(gif), [str(gif)] + [str(p) for p in paths]


# ----- landscapes -----
@on_gpu
def generate_landscapes(model: str, seed: float, n: float, temperature: float, size: float, method: str):
    try:
        return captioned(service.landscapes(model, seed, n, temperature, size, method))
    except GenlibError as e:
        raise one_line(e) from e


@on_gpu
def steer_landscape(model: str, seed: float, temperature: float, size: float, method: str, *amounts: float) -> str:
    """One sample moved along the latent directions; all sliders at 0 give the plain sample."""
    try:
        return str(service.landscapes(model, seed, 1, temperature, size, method, directions=list(amounts))[0])
    except GenlibError as e:
        raise one_line(e) from e


@on_gpu
def landscape_photo(model: str, photo: str | None, n: float, strength: float, seed: float, size: float, method: str):
    """Upload -> (what the model sees, reconstruction, variations)."""
    try:
        seen, recon, variations = service.landscape_photo(model, photo, n, strength, seed, size, method)
    except GenlibError as e:
        raise one_line(e) from e
    return str(seen), str(recon), captioned(variations)


@on_gpu
def interpolate_landscapes(
    model: str,
    seed_a: float,
    seed_b: float,
    photo_a: str | None,
    photo_b: str | None,
    frames: float,
    temperature: float,
    size: float,
    method: str,
):
    """Between two seeds, or two photos where they are uploaded (a photo replaces its seed)."""
    try:
        gif, paths = service.landscape_interpolation(
            model, photo_a or seed_a, photo_b or seed_b, frames, temperature, size, method
        )
    except GenlibError as e:
        raise one_line(e) from e
    return str(gif), [str(gif)] + [str(p) for p in paths]


# ----- text -----
def validate_text(model, prompt, chat, max_new_tokens, temperature, top_p, top_k, seed):  # noqa: ANN001
    return [
        gr.validate(True, ""),
        gr.validate(
            bool(prompt and prompt.strip()) and len(prompt) <= MAX_PROMPT_CHARS,
            f"enter a prompt of 1 to {MAX_PROMPT_CHARS} characters",
        ),
        gr.validate(True, ""),
        gr.validate(
            max_new_tokens is not None and 1 <= max_new_tokens <= MAX_NEW_TOKENS,
            f"max new tokens must be in [1, {MAX_NEW_TOKENS}]",
        ),
        gr.validate(temperature is not None and temperature >= 0, "temperature must be >= 0"),
        gr.validate(top_p is not None and 0 < top_p <= 1, "top-p must be in (0, 1]"),
        gr.validate(top_k is not None and top_k >= 0, "top-k must be >= 0 (0 = off)"),
        gr.validate(seed is not None and seed >= 0, "seed must be >= 0"),
    ]


@on_gpu
def generate_text(model, prompt, chat, max_new_tokens, temperature, top_p, top_k, seed, request: gr.Request):  # noqa: ANN001
    """Streams (text, speed line); the Stop button ends it within one token."""
    import time

    flag = _stop_flags.setdefault(request.session_hash or "anon", threading.Event())
    flag.clear()
    text, pieces, t0 = "", 0, time.perf_counter()
    try:
        for piece in service.text_stream(
            model,
            prompt,
            chat=bool(chat),
            stop=flag.is_set,
            max_new_tokens=int(max_new_tokens),
            temperature=float(temperature),
            top_p=float(top_p),
            top_k=int(top_k) or None,
            seed=int(seed),
        ):
            text += piece
            pieces += 1
            yield text, f"{pieces} pieces, {pieces / (time.perf_counter() - t0):.1f} tokens/s"
    except GenlibError as e:
        raise one_line(e) from e


# Sampling defaults per known text model: (chat, max new tokens, temperature, top-p, top-k).
TEXT_DEFAULTS = {
    "stories": (False, 120, 0.8, 0.95, 50),
    "HuggingFaceTB/SmolLM2-135M-Instruct": (True, 200, 0.2, 0.9, 50),
    "openai-community/gpt2": (False, 100, 0.9, 0.95, 50),
}


def text_defaults(model: str):  # noqa: ANN201
    """The picked model's sampling defaults; other references keep what the user set."""
    d = TEXT_DEFAULTS.get((model or "").strip().split("@")[0])
    return [gr.skip()] * 5 if d is None else list(d)


def stop_text(request: gr.Request) -> None:
    _stop_flags.setdefault(request.session_hash or "anon", threading.Event()).set()


# ----- layout -----
def build() -> gr.Blocks:
    with gr.Blocks(title="genlib: generative models you can inspect") as demo:
        gr.Markdown(
            "# genlib\nFaces from a GAN, landscapes from a VAE, stories from a transformer — all trained "
            "small, all running on a CPU. **Every image here is AI-generated** and its PNG says which model, "
            "revision and seed made it."
        )
        gr.Markdown(f"<small>{credentials_status()}</small>")
        with gr.Tab("Faces"):
            gr.Markdown(not_ready_note("faces"))
            with gr.Row():
                f_model = gr.Dropdown(
                    ["faces"],
                    value="faces",
                    allow_custom_value=True,
                    label="Model",
                    info="embedded 'faces', a folder, or a Hub repo owner/name@revision",
                )
                f_load = gr.Button("Load model", scale=0)
            f_status = gr.Markdown()
            with gr.Row():
                f_seed = gr.Number(0, precision=0, label="Seed", minimum=0)
                f_rand = gr.Button("🎲 Random seed", scale=0)
                f_n = gr.Slider(1, 16, value=8, step=1, label="Number of faces")
                f_psi = gr.Slider(0, 1, value=0.7, step=0.05, label="Truncation ψ", info="0 = the average face")
            with gr.Row():
                f_size = gr.Dropdown([64, 128, 256, 512], value=128, label="Display size (px)")
                f_method = gr.Radio(
                    ["nearest", "lanczos"],
                    value="nearest",
                    label="Upscaling",
                    info="nearest shows the model's real 64 px; lanczos smooths",
                )
            f_go = gr.Button("Generate faces", variant="primary")
            gr.Markdown(f"<span class='ai-label'>⚠ {AI_LABEL}: these people do not exist.</span>")
            f_gallery = gr.Gallery(label=f"{AI_LABEL} faces", columns=4, format="png", height="auto")
            gr.Examples(  # cached on first use (lazy): start-up stays fast, later clicks are instant
                [
                    ["faces", 0, 8, 0.7, 128, "nearest"],
                    ["faces", 42, 4, 1.0, 256, "lanczos"],
                    ["faces", 7, 16, 0.5, 64, "nearest"],
                ],
                [f_model, f_seed, f_n, f_psi, f_size, f_method],
                f_gallery,
                fn=generate_faces,
                batch=True,
                cache_examples=embedded_ready("faces"),
                cache_mode="lazy",
                api_visibility="private",
            )
            with gr.Accordion("Interpolate between two seeds", open=False):
                with gr.Row():
                    i_a = gr.Number(0, precision=0, label="Seed A", minimum=0)
                    i_b = gr.Number(1, precision=0, label="Seed B", minimum=0)
                    i_frames = gr.Slider(2, MAX_FRAMES, value=16, step=1, label="Frames")
                i_go = gr.Button("Interpolate (spherical)")
                i_anim = gr.Image(label=f"{AI_LABEL} animation", type="filepath", format="gif")
                i_files = gr.File(label="Download GIF and PNG frames", file_count="multiple")
            f_load.click(load_faces, f_model, f_status, api_name="load_faces_model", **MODEL_LIMIT)
            f_rand.click(lambda: random.randrange(2**31), None, f_seed, api_name=False, queue=False)
            f_go.click(
                generate_faces,
                [f_model, f_seed, f_n, f_psi, f_size, f_method],
                f_gallery,
                api_name="faces",
                batch=True,
                max_batch_size=FACE_BATCH,
                **MODEL_LIMIT,
            )
            i_go.click(
                interpolate_faces,
                [f_model, i_a, i_b, i_frames, f_psi, f_size, f_method],
                [i_anim, i_files],
                api_name="faces_interpolate",
                **MODEL_LIMIT,
            )

        with gr.Tab("Landscapes"):
            gr.Markdown(
                not_ready_note("landscapes")
                or "Sample landscapes from a VAE-GAN, see how it encodes your photo, walk between two scenes "
                "and steer a sample along the main directions of its latent space."
            )
            with gr.Row():
                l_model = gr.Dropdown(
                    ["landscapes"],
                    value="landscapes",
                    allow_custom_value=True,
                    label="Model",
                    info="embedded 'landscapes', a folder, or a Hub repo owner/name@revision",
                )
                l_load = gr.Button("Load model", scale=0)
            l_status = gr.Markdown()
            with gr.Row():
                l_seed = gr.Number(0, precision=0, label="Seed", minimum=0)
                l_rand = gr.Button("🎲 Random seed", scale=0)
                l_n = gr.Slider(1, 16, value=8, step=1, label="Number of landscapes")
                l_temp = gr.Slider(0, 1.5, value=1.0, step=0.05, label="Temperature", info="0 = the mean landscape")
            with gr.Row():
                l_size = gr.Dropdown([64, 128, 256, 512], value=128, label="Display size (px)")
                l_method = gr.Radio(["nearest", "lanczos"], value="nearest", label="Upscaling")
            l_go = gr.Button("Generate landscapes", variant="primary")
            gr.Markdown(f"<span class='ai-label'>⚠ {AI_LABEL}: these places do not exist.</span>")
            l_gallery = gr.Gallery(label=f"{AI_LABEL} landscapes", columns=4, format="png", height="auto")
            gr.Examples(
                [["landscapes", 0, 8, 1.0, 128, "nearest"], ["landscapes", 100, 4, 0.7, 256, "lanczos"]],
                [l_model, l_seed, l_n, l_temp, l_size, l_method],
                l_gallery,
                fn=generate_landscapes,
                cache_examples=embedded_ready("landscapes"),
                cache_mode="lazy",
                api_visibility="private",
            )
            with gr.Accordion("Steer with latent directions", open=False):
                gr.Markdown(
                    "Each slider moves the sample (the seed above, one image) along a principal direction of the "
                    "encoded training photos, in standard deviations; direction 1 varies most. All at 0 = the sample."
                )
                with gr.Row():
                    l_dirs = [
                        gr.Slider(-3, 3, value=0, step=0.25, label=f"Direction {i + 1}") for i in range(N_DIRECTIONS)
                    ]
                l_reset = gr.Button("Reset directions", scale=0)
                l_steered = gr.Image(label=f"{AI_LABEL} steered landscape", type="filepath", format="png")
            with gr.Accordion("Your photo: reconstruction and variations", open=True):
                with gr.Row():
                    l_photo = gr.File(
                        label="Your photo", file_types=["image"], type="filepath", file_count="single", height=140
                    )
                    l_nvar = gr.Slider(0, 8, value=4, step=1, label="Variations")
                    l_strength = gr.Slider(
                        0, 1, value=0.4, step=0.05, label="Strength", info="0 = the reconstruction, 1 = new samples"
                    )
                l_photo_go = gr.Button("Reconstruct and vary")
                with gr.Row():
                    l_seen = gr.Image(label="What the model sees (centre crop, resized)", type="filepath", format="png")
                    l_recon = gr.Image(label=f"Reconstruction ({AI_LABEL})", type="filepath", format="png")
                l_vars = gr.Gallery(label=f"Variations ({AI_LABEL})", columns=4, format="png", height="auto")
            with gr.Accordion("Interpolate", open=False):
                gr.Markdown("Between two seeds; upload a photo for an end to start or finish at its reconstruction.")
                with gr.Row():
                    li_a = gr.Number(0, precision=0, label="Seed A", minimum=0)
                    li_b = gr.Number(1, precision=0, label="Seed B", minimum=0)
                    li_frames = gr.Slider(2, MAX_FRAMES, value=16, step=1, label="Frames")
                with gr.Row():
                    li_pa = gr.File(label="Photo A (optional)", file_types=["image"], type="filepath", height=120)
                    li_pb = gr.File(label="Photo B (optional)", file_types=["image"], type="filepath", height=120)
                li_go = gr.Button("Interpolate")
                li_anim = gr.Image(label=f"{AI_LABEL} animation", type="filepath", format="gif")
                li_files = gr.File(label="Download GIF and PNG frames", file_count="multiple")
            l_load.click(load_landscapes, l_model, l_status, api_name="load_landscapes_model", **MODEL_LIMIT)
            l_rand.click(lambda: random.randrange(2**31), None, l_seed, api_name=False, queue=False)
            l_go.click(
                generate_landscapes,
                [l_model, l_seed, l_n, l_temp, l_size, l_method],
                l_gallery,
                api_name="landscapes",
                **MODEL_LIMIT,
            )
            steer_inputs = [l_model, l_seed, l_temp, l_size, l_method, *l_dirs]
            for sl in l_dirs:
                sl.release(steer_landscape, steer_inputs, l_steered, api_name=False, **MODEL_LIMIT)
            l_reset.click(lambda: [0] * N_DIRECTIONS, None, l_dirs, api_name=False, queue=False).then(
                steer_landscape, steer_inputs, l_steered, api_name=False, **MODEL_LIMIT
            )
            gr.on(  # the API endpoint (sliders above call the same function)
                [l_go.click], steer_landscape, steer_inputs, l_steered, api_name="landscapes_steer", **MODEL_LIMIT
            )
            l_photo_go.click(
                landscape_photo,
                [l_model, l_photo, l_nvar, l_strength, l_seed, l_size, l_method],
                [l_seen, l_recon, l_vars],
                api_name="landscapes_photo",
                **MODEL_LIMIT,
            )
            li_go.click(
                interpolate_landscapes,
                [l_model, li_a, li_b, li_pa, li_pb, li_frames, l_temp, l_size, l_method],
                [li_anim, li_files],
                api_name="landscapes_interpolate",
                **MODEL_LIMIT,
            )

        with gr.Tab("Text"):
            gr.Markdown(not_ready_note("stories"))
            with gr.Row():
                t_model = gr.Dropdown(
                    ["stories", "HuggingFaceTB/SmolLM2-135M-Instruct", "openai-community/gpt2"],
                    value="stories",
                    allow_custom_value=True,
                    label="Model",
                    info="Hub models download on first use",
                )
                t_load = gr.Button("Load model", scale=0)
            t_status = gr.Markdown()
            t_prompt = gr.Textbox("Once upon a time", label="Prompt", lines=3, max_length=MAX_PROMPT_CHARS)
            t_chat = gr.Checkbox(False, label="Chat mode (instruct models: wrap the prompt in the chat template)")
            with gr.Row():
                t_max = gr.Slider(1, MAX_NEW_TOKENS, value=120, step=1, label="Max new tokens")
                t_temp = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature", info="0 = greedy")
                t_top_p = gr.Slider(0.05, 1, value=0.95, step=0.05, label="Top-p")
                t_top_k = gr.Slider(0, 200, value=50, step=1, label="Top-k (0 = off)")
                t_seed = gr.Number(0, precision=0, label="Seed", minimum=0)
            with gr.Row():
                t_go = gr.Button("Generate", variant="primary")
                t_stop = gr.Button("Stop")
            t_out = gr.Textbox(label="Output (AI-generated text)", lines=10)
            gr.Examples(  # fill the inputs only: text streams, and each run is the user's own
                [
                    ["stories", "Once upon a time, there was a little fox who", False],
                    ["stories", "Tom and his sister found a box in the garden.", False],
                    ["HuggingFaceTB/SmolLM2-135M-Instruct", "What is the capital of France?", True],
                ],
                [t_model, t_prompt, t_chat],
                cache_examples=False,
            )
            t_speed = gr.Markdown()
            t_inputs = [t_model, t_prompt, t_chat, t_max, t_temp, t_top_p, t_top_k, t_seed]
            t_load.click(load_text, t_model, t_status, api_name="load_text_model", **MODEL_LIMIT)
            t_model.change(
                text_defaults, t_model, [t_chat, t_max, t_temp, t_top_p, t_top_k], api_name=False, queue=False
            )
            t_go.click(
                generate_text, t_inputs, [t_out, t_speed], api_name="text", validator=validate_text, **MODEL_LIMIT
            )
            t_stop.click(stop_text, None, None, api_name="stop_text", queue=False)
    demo.queue(max_size=64, default_concurrency_limit=2)
    return demo


def share_reachable(host: str = "api.gradio.app", timeout: float = 3.0) -> bool:
    """Whether Gradio's share service can be reached (it would otherwise print a long download hint)."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def ray_service(address: str):  # noqa: ANN201
    """genlib.serve.RayService connected to `address`; a one-line error and exit 2 (1) without Ray (a cluster)."""
    import sys

    try:
        from genlib.serve import RayService
    except ImportError as e:
        print(f"genlib: --ray needs Ray Serve: pip install -r requirements-ray.txt ({e})", file=sys.stderr)
        sys.exit(2)
    try:
        return RayService(address)
    except GenlibError as e:
        print(f"genlib: {e}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    global service
    p = argparse.ArgumentParser(description="genlib's Gradio app")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", default=os.environ.get("GRADIO_SHARE") == "1")
    p.add_argument(
        "--mcp",
        action="store_true",
        default=os.environ.get("GRADIO_MCP_SERVER") == "1",
        help="also serve Gradio's MCP server",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=os.environ.get("GENLIB_RAY_ADDRESS"),
        help="run the models on the Ray Serve deployments at ADDRESS (auto, HOST:6379 or ray://HOST:10001)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="model calls in flight at once (default 2; 32 with --ray, where the replicas do the work)",
    )
    args = p.parse_args()
    if args.ray:
        service = ray_service(args.ray)
    MODEL_LIMIT["concurrency_limit"] = args.concurrency or (32 if args.ray else 2)
    if args.share and not share_reachable():
        print(f"genlib: no network for a share link; serving locally only at http://{args.host}:{args.port}")
        args.share = False
    demo = build()
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        mcp_server=args.mcp or None,
        theme=THEME,
        css=CSS,
        max_file_size="10mb",
        footer_links=["api"],
    )


if __name__ == "__main__":
    main()
