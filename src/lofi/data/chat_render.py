# Renders conversations with a Hugging Face chat template as transformers' apply_chat_template
# does (jinja2's ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loopcontrols;
# its tojson filter; raise_exception and strftime_now; the tokenizer's special tokens as variables)
# and marks the assistant's characters: those between rendering the turns before an assistant
# message with add_generation_prompt and rendering through that message. lofi runs it
# (data/chat_template.cpp) with a Python that has jinja2 (PyTorch's wheel depends on it):
#   python -c SCRIPT TOKENIZER_DIR IN.jsonl OUT.jsonl TRAIN_ON_PROMPT TEMPLATE_FILE KWARGS_JSON
# TEMPLATE_FILE (may be empty): a Jinja file rendering instead of the directory's template.
# KWARGS_JSON: an object of variables passed to the template, over the special tokens' names (as
# apply_chat_template's **kwargs, e.g. {"enable_thinking": false}).
# Templates from model repositories are untrusted code: they run sandboxed, and jinja2 older than
# 3.1.6 (known sandbox escapes) is refused, as transformers refuses it.
# IN: {"line": N, "messages": [...], "add_generation_prompt": false} per line.
# OUT: per input line {"segments": [[text, trained], ...]} or {"error": "..."}.
# Exit status 2 with one line on stderr: the template cannot be read or compiled.
import json
import os
import sys
from datetime import datetime

try:
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError as e:
    sys.stderr.write(f"chat templates need the jinja2 package in this Python ({sys.executable}): {e}; "
                     "point LOFI_PYTHON at a Python that has it (the project environment's: scripts/python-env.sh)\n")
    sys.exit(2)
if tuple(int(p) for p in jinja2.__version__.split(".")[:3] if p.isdigit()) < (3, 1, 6):
    sys.stderr.write(f"chat templates need jinja2 >= 3.1.6 (older versions have known sandbox escapes); "
                     f"{sys.executable} has {jinja2.__version__}; point LOFI_PYTHON at the project environment's Python "
                     "(scripts/python-env.sh), whose jinja2 is pinned in scripts/requirements.lock\n")
    sys.exit(2)


class Generation(Extension):
    """transformers' {% generation %} ... {% endgeneration %}: rendered as its body (the masks here
    come from rendering prefixes, which works for templates with and without the tags)."""
    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


class TemplateDict:
    """dict() for templates, without attribute access to the type (as transformers gives it)."""
    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class TemplateNamespace(jinja2.utils.Namespace):
    """namespace() refusing underscore names, which could reach Python's internals."""
    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot store underscore names on a namespace: {name!r}")


def token_text(value):
    if isinstance(value, dict):
        return value.get("content")
    return value


def load(directory, template_file):
    config = {}
    config_path = os.path.join(directory, "tokenizer_config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    jinja_path = template_file or os.path.join(directory, "chat_template.jinja")
    if os.path.exists(jinja_path):
        with open(jinja_path, encoding="utf-8") as f:
            source, where = f.read(), jinja_path
    else:
        source, where = config.get("chat_template"), config_path + ": chat_template"
        if isinstance(source, list):  # named templates: the "default" one, as transformers picks
            named = {t.get("name"): t.get("template") for t in source}
            source = named.get("default")
        processor_path = os.path.join(directory, "chat_template.json")
        if not isinstance(source, str) and os.path.exists(processor_path):
            # A vision-language model's processor keeps the template apart (what its users chat with).
            with open(processor_path, encoding="utf-8") as f:
                source, where = json.load(f).get("chat_template"), processor_path + ": chat_template"
        if not isinstance(source, str):
            raise ValueError(f"{directory}: no chat template (neither chat_template.jinja nor a chat_template "
                             "string in tokenizer_config.json or a processor's chat_template.json); give a tokenizer "
                             "directory of an instruction-tuned model")
    variables = {}
    special_map = os.path.join(directory, "special_tokens_map.json")
    sources = [config]
    if os.path.exists(special_map):
        with open(special_map, encoding="utf-8") as f:
            sources.insert(0, json.load(f))
    for table in sources:
        for key in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
            if table.get(key) is not None:
                variables[key] = token_text(table[key])
        if "additional_special_tokens" in table:
            variables["additional_special_tokens"] = [token_text(t) for t in table["additional_special_tokens"]]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    try:
        template = env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"{where}: the chat template uses what jinja2 {jinja2.__version__} does not know "
                         f"(line {e.lineno}: {e.message})")
    return template, variables


def segments(template, variables, messages, add_generation_prompt, train_on_prompt):
    def render(turns, generation_prompt):
        return template.render(messages=turns, tools=None, documents=None,
                               add_generation_prompt=generation_prompt, **variables)

    full = render(messages, add_generation_prompt)
    if train_on_prompt:
        return [[full, 1]]
    spans = []
    for k, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = render(messages[:k], True)
        through = render(messages[:k + 1], False)
        if not through.startswith(before) or not full.startswith(through):
            raise ValueError(f"the chat template does not render turn {k + 1} as a continuation of the turns before it "
                             "(it rewrites earlier turns, as Qwen3's drops their reasoning), so the assistant's tokens "
                             "cannot be told apart; give --chat-template a training template that renders every turn "
                             "once (e.g. TRL's qwen3_training.jinja), or use --train-on-prompt to train on every token")
        if len(through) > len(before):
            spans.append((len(before), len(through)))
    out, at = [], 0
    for begin, end in spans:
        if begin > at:
            out.append([full[at:begin], 0])
        out.append([full[begin:end], 1])
        at = end
    if at < len(full):
        out.append([full[at:], 0])
    return out


def main():
    directory, source, target, train_on_prompt = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    template_file, kwargs = sys.argv[5], json.loads(sys.argv[6])
    try:
        template, variables = load(directory, template_file)
        variables.update(kwargs)
    except (ValueError, OSError, json.JSONDecodeError) as e:
        sys.stderr.write(f"{e}\n")
        sys.exit(2)
    with open(source, encoding="utf-8") as f, open(target, "w", encoding="utf-8") as out:
        for line in f:
            sample = json.loads(line)
            try:
                result = {"segments": segments(template, variables, sample["messages"],
                                               sample.get("add_generation_prompt", False), train_on_prompt)}
            except Exception as e:  # the template's own error (raise_exception, a type error, ...): this sample's
                result = {"error": str(e) if isinstance(e, (jinja2.exceptions.TemplateError, ValueError))
                          else f"{type(e).__name__}: {e}"}
            out.write(json.dumps(result, ensure_ascii=False) + "\n")


main()
