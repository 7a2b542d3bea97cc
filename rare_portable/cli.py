"""`rare`: the command line. Each command lives in `rare_portable/commands/`; this file only groups them.

Errors users can fix (bad config, dictionary, weights, input) print one line and exit 2, no traceback.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Optional

import click

from .errors import UserError

# command name -> "module:attribute", imported when the command runs so `rare --help` stays fast.
COMMANDS = {
    "rectify": "rare_portable.commands.rectify_cmd:rectify",
    "lmdb": "rare_portable.commands.lmdb_cmds:lmdb",
    "synth": "rare_portable.commands.synth_cmd:synth",
    "eval": "rare_portable.commands.eval_cmd:eval_command",
    "predict": "rare_portable.commands.predict_cmd:predict",
    "export": "rare_portable.commands.export_cmd:export",
    "convert": "rare_portable.commands.export_cmd:convert",
    "mslite-setup": "rare_portable.commands.export_cmd:mslite_setup",
    "parity": "rare_portable.commands.parity_cmd:parity",
    "train": "rare_portable.commands.train_cmd:train",
    "doctor": "rare_portable.commands.doctor_cmd:doctor",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


def config_options(func):
    """`--config` and repeated `--opt dotted.key=value`, as MindOCR users edit their yaml. The config may be left
    out when `-w` names a shipped model, whose own config is then used (`resolve_model`)."""
    func = click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
                        help="Override a config key, e.g. --opt common.batch_size=64 (repeatable).")(func)
    return click.option("--config", "-c", metavar="YAML|NAME",
                        help="Our yaml or MindOCR's rec yaml, or a shipped config name (rare_tiny, ...). "
                             "Default: the config of the shipped model -w names.")(func)


class WeightsParam(click.ParamType):
    """A weights file, or the name of a shipped model (`rare_small_en`); a wrong name lists the shipped ones."""

    name = "FILE|NAME"

    def convert(self, value, param, ctx):
        from .pretrained import PretrainedError, looks_like_name, pretrained_weights

        path = Path(value)
        if path.is_dir():
            raise PretrainedError(f"weights {value} is a folder; pass a weights file or a shipped model's name")
        if not path.exists():
            if not looks_like_name(str(value)):
                raise PretrainedError(f"weights {value}: no such file; pass an existing weights file or a "
                                      f"shipped model's name")
            pretrained_weights(str(value))  # raises, naming the shipped models, for an unknown name
        return str(value)


WEIGHTS = WeightsParam()


def resolve_model(config: Optional[str], weights: Optional[str], default_model: bool = False):
    """(config, weights) with the gaps filled: no weights -> the default shipped model (where the command reads
    with one: predict, eval); no config -> the config shipped with the named weights."""
    from .pretrained import DEFAULT_MODEL, list_pretrained, pretrained_config, shipped_name

    if weights is None and default_model:
        weights = DEFAULT_MODEL
    if config is None:
        name = shipped_name(weights)
        if name is None:
            shipped = ", ".join(list_pretrained()) or "none installed"
            raise click.UsageError(f"--config is required unless -w names a shipped model ({shipped})")
        config = str(pretrained_config(name))
    return config, weights


@click.group(cls=LazyGroup)
@click.version_option(package_name="rare-portable")
def cli():
    """RARE scene-text recognition on MindSpore, PyTorch and exported runtimes."""


def main():
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except UserError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(0)
