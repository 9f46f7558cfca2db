"""Every verb explains itself: each flag and argument of every verb's --help has a help sentence,
and names its default where it has one (train's come from config.py's settings)."""
import argparse
import re

from densekit.cli import build_parser


def every_action():
    """(verb, action) for every flag and argument of every verb and sub-verb."""
    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{prefix} {name}".strip())
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                yield prefix, parser, action
    yield from walk(build_parser(), "")


def shows_default(text: str, default) -> bool:
    forms = {str(default)} | ({f"{default:,}", f"{default:g}"} if isinstance(default, (int, float)) else set())
    return "default" in text or any(re.search(rf"(?<![\w.]){re.escape(f)}(?![\w.])", text) for f in forms)


def test_every_flag_of_every_verb_has_a_help_sentence_with_its_default():
    missing, no_default = [], []
    for verb, parser, action in every_action():
        name = f"densekit {verb} {'/'.join(action.option_strings) or action.metavar or action.dest}"
        text = parser._get_formatter()._expand_help(action) if action.help else ""
        if len(text.split()) < 2:
            missing.append(name)
            continue
        flagged = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                      argparse.BooleanOptionalAction))
        if action.option_strings and not flagged and action.default not in (None, False, argparse.SUPPRESS) \
                and not shows_default(text, action.default):
            no_default.append(f"{name} (default {action.default!r}): {text}")
    assert not missing, "flags without a help sentence:\n" + "\n".join(missing)
    assert not no_default, "help that does not name the default:\n" + "\n".join(no_default)


def test_every_json_flag_says_the_same_thing():
    for verb, parser, action in every_action():
        if "--json" in action.option_strings:
            assert re.fullmatch(r"print .+ as JSON, one object per line(, .+)?", action.help), (verb, action.help)
            assert action.help.count("JSON") == 1, (verb, action.help)
