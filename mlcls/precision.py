"""Which precision to compute in: the hardware decides `auto`, for training (Accelerate's mixed precision) and
for inference (autocast, or int8). Below training and inference alike, so that neither imports the other.

Why the CPU matters: bf16 autocast pays on CPUs with native bf16 (AVX512-BF16, AMX: 2.45x faster MiniLM
inference, measured) and runs many times slower than fp32 on those without. torch is imported inside the
functions: `mlcls --help` reads modules that import this one.
"""

from __future__ import annotations

from mlcls.errors import ConfigError, MlclsError


def choose_precision(device: str, precision: str) -> tuple[bool, str]:
    """(on a CUDA GPU?, fp32|bf16|fp16): auto is bf16 where the hardware runs it fast, fp16 on older GPUs,
    fp32 on CPUs without native bf16."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda, but no CUDA GPU is available")
    on_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if precision == "auto":
        if on_cuda:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and not on_cuda:
        raise ConfigError("train.precision fp16 needs a CUDA GPU (use bf16 or fp32 on a CPU)")
    return on_cuda, precision


def cpu_has_fast_bf16() -> bool:
    """bf16 autocast pays on CPUs with native bf16 (AVX512-BF16, AMX) and is ~20x slower without."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: absent from some builds
        return False


PRECISIONS = ("auto", "fp32", "bf16")


def choose_inference_precision(device: str, precision: str, int8: bool = False,
                               source: str = "--precision") -> tuple[str, str]:
    """(fp32 | bf16 | int8, the line that says so) for scoring on `device` (cpu or cuda).

    auto is bf16 on a GPU with bf16 and on a CPU with native bf16 (AVX512-BF16, AMX: the test training's auto
    uses), fp32 elsewhere: without native bf16 a CPU runs bf16 matrix products many times slower than fp32.
    `source` names where an explicit choice came from (--precision, or the run's config key). --int8 runs
    the linear layers in int8: bf16 given with it on the command line is an error; auto, or bf16 from
    the run's config, gives way to it."""
    import torch

    if precision not in PRECISIONS:
        raise MlclsError(f"{source} {precision!r}: the choice is auto, fp32 or bf16")
    if int8:
        if precision == "bf16" and source == "--precision":
            raise MlclsError("--int8 and --precision bf16 exclude each other on a CPU: choose one of them")
        why = f"--int8, not bf16 from {source}" if precision == "bf16" else "--int8"
        return "int8", f"precision int8 ({why}): the encoder's linear layers in dynamic int8, the rest in fp32"
    if str(device).startswith("cuda"):
        has_bf16 = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return ("bf16", "precision bf16 (auto: this GPU runs bf16)") if has_bf16 else \
                ("fp32", "precision fp32 (auto: this GPU lacks bf16)")
        if precision == "bf16" and not has_bf16:
            raise MlclsError(f"bf16 ({source}): this GPU does not run bf16; use --precision fp32 or auto")
        return precision, f"precision {precision} ({source})"
    native = cpu_has_fast_bf16()  # looked up at each call: a test may replace it
    if precision == "auto":
        return ("bf16", "precision bf16 (auto: this CPU has native bf16)") if native else \
            ("fp32", "precision fp32 (auto: this CPU lacks native bf16, which would run many times slower)")
    if precision == "bf16" and not native:
        return "bf16", (f"precision bf16 ({source}); this CPU lacks native bf16: expect it many times slower than "
                        "fp32")
    return precision, f"precision {precision} ({source})"


def linear_weights_in_bf16(model) -> int:
    """Store `model`'s linear layers' weights and biases in bf16, for scoring under bf16 autocast; how many layers.

    Autocast casts each linear layer's fp32 weights to bf16 at every forward pass, and on a CPU that copy is much
    of a small pass's cost: a pass is 1.04-1.62x faster with the weights cast once (one window of 16 tokens
    1.5-1.6x, 16 x 128 1.04-1.05x; docs/benchmarks.md, "bf16 scoring"). The logits are the same bits: autocast
    feeds linear layers bf16 either way. Embeddings and layer norms stay fp32, as autocast runs them, and so does
    a linear layer whose weight another kind of module shares (a decoder tied to the embeddings). The model is
    then for scoring under bf16 autocast only: not for training, nor an fp32 export, nor a call outside autocast.
    """
    import torch

    shared = {id(parameter) for module in model.modules() if not isinstance(module, torch.nn.Linear)
              for parameter in module.parameters(recurse=False)}
    layers = [module for module in model.modules() if isinstance(module, torch.nn.Linear)
              and not any(id(parameter) in shared for parameter in module.parameters(recurse=False))]
    for layer in layers:
        layer.to(torch.bfloat16)
    return len(layers)
