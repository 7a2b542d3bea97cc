"""`rare export` (ONNX, int8 ONNX, MindIR, MindSpore Lite) and `rare convert` (Ascend 310 converter config)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ..cli import WEIGHTS, config_options, resolve_model

FORMATS = {"onnx": ".onnx", "onnx-lite": ".onnx", "mindir": ".mindir", "mslite": ".ms"}
CALIBRATION_IMAGES = 256


@click.command()
@config_options
@click.option("--weights", "-w", type=WEIGHTS,
              help="Trained weights (.ckpt/.pt/.safetensors); fresh weights without it.")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), required=True,
              help="onnx (GridSample, for ONNX Runtime), onnx-lite (the graph MindSpore Lite 2.0 parses), "
                   "mindir (MindSpore, Ascend 310 via `rare convert`), mslite (a MindSpore Lite model).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--dynamic-batch/--static-batch", default=True, show_default=True, help="A dynamic batch axis.")
@click.option("--batch", type=int, default=1, show_default=True, help="The batch of a static export.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (>= 16 with TPS).")
@click.option("--simplify", is_flag=True, help="Simplify the ONNX graph with onnxslim (parity re-checked).")
@click.option("--device", default="cpu", show_default=True, help="MindIR: the device MindSpore exports on.")
@click.option("--lstm-kernel", is_flag=True,
              help="MindIR: keep MindSpore's LSTM kernel (CPU/GPU serving) instead of plain operators; a file "
                   "with the kernel does not convert for Ascend unless exported on an Ascend device.")
@click.option("--int8", "int8", type=click.Choice(["static", "dynamic"]),
              help="ONNX: write an int8 model (ONNX Runtime's quantizer) instead of the fp32 one. static: "
                   "int8 convolutions, activation ranges calibrated on word images; dynamic: int8 weights of "
                   "the matrix products, no calibration.")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="static int8: an LMDB (or a folder of them) of word images to calibrate on. "
                   "Default: words rendered by `rare synth`.")
@click.option("--decoder", type=click.Choice(["unrolled", "stepwise"]), default="unrolled", show_default=True,
              help="ONNX: unrolled (all steps in one graph, every runtime) or stepwise (an encoder and a one-step "
                   "graph, FILE and FILE.step.onnx, that ONNX Runtime loops until every word has emitted STOP).")
@click.option("--calibration-images", type=click.IntRange(min=1), default=CALIBRATION_IMAGES, show_default=True,
              help="static int8: how many images to calibrate on (rendered, or spread over --calibration).")
def export(config, opts, weights, fmt, output, dynamic_batch, batch, opset, simplify, device, lstm_kernel, int8,
           calibration, decoder, calibration_images):
    """Export a trained model; each artifact carries its spec and is checked against the network."""
    from ..api import build_model

    config, weights = resolve_model(config, weights)
    if output.suffix != FORMATS[fmt]:
        raise click.ClickException(f"--output {output}: a {fmt} file ends in {FORMATS[fmt]}")
    if int8 and fmt != "onnx":
        raise click.ClickException(f"--int8 needs --format onnx (ONNX Runtime runs int8 models), not {fmt}")
    if lstm_kernel and fmt != "mindir":
        raise click.ClickException("--lstm-kernel is for --format mindir (ONNX keeps the LSTM op; onnx-lite "
                                   "unrolls it)")
    if decoder == "stepwise" and (fmt != "onnx" or int8 or simplify or not dynamic_batch):
        raise click.ClickException("--decoder stepwise is for a plain fp32 --format onnx export (dynamic batch, "
                                   "no --int8, no --simplify)")
    if calibration and int8 != "static":
        raise click.ClickException("--calibration is for --int8 static; dynamic int8 needs no calibration images")
    from ..artifact import output_folder

    output_folder(output)  # before the network is built: a bad folder fails at once, nothing written
    if fmt == "mindir":
        from exporters.mindir_export import export_mindir
        from ..devices import set_mindspore_device

        set_mindspore_device(device)
        result = export_mindir(build_model(config, "mindspore", opts=opts, weights=weights), output,
                               batch=None if dynamic_batch else batch, lstm_kernel=lstm_kernel)
        click.echo(f"{result.path}: input {result.input_name!r}, batch {result.batch or 'dynamic'}, "
                   f"{result.lstm} LSTM, max |diff| vs MindSpore {result.max_abs_diff:.2e}")
        return
    net = build_model(config, "torch", opts=opts, weights=weights)
    if fmt == "mslite":
        from exporters.mslite_export import export_mslite

        result = export_mslite(net, output, opset=opset)
        click.echo(f"{result.path}: MindSpore Lite {result.lite_version} model (spec in {output.name}.json), "
                   f"Lite vs PyTorch max |diff| {result.max_abs_diff:.2e} (its ONNX {result.onnx_max_abs_diff:.2e})")
        return
    if decoder == "stepwise":
        from exporters.onnx_stepwise import export_stepwise

        from ..artifact import step_path

        path = export_stepwise(net, output, opset=opset)
        click.echo(f"{path} (encoder) and {step_path(path).name} (one decoder step): ONNX Runtime stops at STOP")
        return
    from exporters.onnx_export import export_onnx

    def export_fp32(path: Path):
        result = export_onnx(net, path, flavour="lite" if fmt == "onnx-lite" else "standard", opset=opset,
                             dynamic_batch=dynamic_batch, batch=batch, simplify=simplify)
        verdict = "identical greedy ids" if result.ids_equal else "greedy ids differ at a near-tie"
        click.echo(f"{result.path if not int8 else 'fp32 model'}: opset {result.opset}, {result.flavour}, "
                   f"ONNX Runtime vs PyTorch max |diff| {result.max_abs_diff:.2e}, {verdict}")
        return result.path

    if not int8:
        export_fp32(output)
        return
    from exporters.quantize import lmdb_calibration, quantize_onnx, rendered_calibration

    calibration_set = None
    if int8 == "static":
        calibration_set = (lmdb_calibration(net.spec, calibration, calibration_images) if calibration
                           else rendered_calibration(net.spec, calibration_images))
    with tempfile.TemporaryDirectory(prefix="rare-export-", dir=output.parent) as tmp:
        quantized = quantize_onnx(export_fp32(Path(tmp) / output.name), output, int8, calibration_set)
    record = quantized.record
    made = (f"calibrated on {record['calibration']['source']}" if record["calibration"]
            else "activation ranges per batch at run time")
    check = " ".join(["rare parity -c", config, *(f"--opt {o}" for o in opts), *(["-w", weights] if weights else []),
                      "--backend torch --artifact", str(quantized.path)])
    click.echo(f"{quantized.path}: int8 {int8} ({', '.join(record['quantized_ops'])} in int8; {made})")
    click.echo(f"check its words against the fp32 network: {check}")


@click.command()
@click.argument("mindir", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", type=click.Choice(["ascend310"]), default="ascend310", show_default=True)
@click.option("--output-dir", "-o", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True)
@click.option("--precision-mode", default="enforce_fp32", show_default=True,
              help="[ascend_context] precision_mode: enforce_fp32, preferred_fp32, enforce_fp16, ...")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--batch-sizes", metavar="N,N,...", default="",
              help="A dynamic-batch MindIR: the batch sizes the Ascend model accepts (dynamic_dims), e.g. 1,8,32.")
@click.option("--run/--no-run", default=None, help="Run converter_lite (default: when it is on PATH).")
def convert(mindir, target, output_dir, precision_mode, batch, batch_sizes, run):
    """Write the converter_lite config and command for MINDIR (from `rare export --format mindir`), after
    checking every operator in it against MindSpore Lite's Ascend operator list."""
    from exporters.ascend310 import convert_ascend310

    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise click.BadParameter(f"{batch_sizes!r}: give batch sizes as N,N,... (e.g. 1,8,32)",
                                 param_hint="--batch-sizes") from None
    if any(b < 1 for b in sizes):
        raise click.BadParameter("batch sizes must be >= 1", param_hint="--batch-sizes")
    result = convert_ascend310(mindir, output_dir, precision_mode=precision_mode, run=run, batch=batch,
                               batch_sizes=sizes)
    click.echo(f"config: {result.config}")
    click.echo("command: " + " ".join(result.command))
    if result.ran:
        click.echo(f"converted: {result.output}")
    else:
        click.echo("converter_lite is not on PATH here: run the command above where MindSpore Lite's Ascend "
                   "converter is installed (CANN toolkit + MindSpore Lite cloud inference)")


@click.command("mslite-setup")
def mslite_setup():
    """Provision MindSpore Lite 2.0 (CPython 3.7 + mindspore-lite) into .mslite37/ for the mslite backend."""
    from ..mslite_bridge import setup

    click.echo(f"MindSpore Lite interpreter: {setup()}")
