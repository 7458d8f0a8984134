#!/usr/bin/env python3
"""What users run instead of `lofi prepare --chat` (bench/chat.sh): transformers'
apply_chat_template over JSONL conversations, ids and assistant masks
(return_assistant_tokens_mask, on the template with {% generation %} tags that TRL's
assistant-only loss needs). Prints {"samples", "seconds", "samples_per_s", "tokens"}.
    python3 chat_prepare_hf.py TOKENIZER_DIR TAGGED_TEMPLATE_FILE CONVERSATIONS.jsonl
"""
import json
import sys
import time

from transformers import PreTrainedTokenizerFast


def main():
    tok = PreTrainedTokenizerFast.from_pretrained(sys.argv[1])
    template = open(sys.argv[2], encoding="utf-8").read()
    with open(sys.argv[3], encoding="utf-8") as f:
        conversations = [json.loads(line)["messages"] for line in f if line.strip()]
    start = time.perf_counter()
    tokens = 0
    for messages in conversations:
        out = tok.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        tokens += len(out["input_ids"])
    seconds = time.perf_counter() - start
    print(json.dumps({"samples": len(conversations), "seconds": seconds, "samples_per_s": len(conversations) / seconds,
                      "tokens": tokens}))


if __name__ == "__main__":
    main()
