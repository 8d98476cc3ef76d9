"""The decoder reward model's ONNX graph: a Llama-family backbone over explicit keys/values.

One call scores k candidate tokens at the same position in one pass: the caller passes the
k tokens as one sequence, all with the same position id, and an additive attention bias that
lets each candidate see the cached prefix and itself only. The same graph prefills a prefix
(causal bias, increasing positions). Keys/values are laid out [tokens, kv_heads, head_dim]
so the runtime can keep them in preallocated buffers and pass contiguous slices.

Inputs:  input_ids int64 [n], position_ids int64 [n], attention_bias float32 [n, past + n],
         past_key_i / past_value_i float32 [past, kv_heads, head_dim] for each kept layer
Outputs: hidden float32 [n, d] (after `n_layers` layers; final norm when the cut is the last
         layer), new_key_i / new_value_i float32 [n, kv_heads, head_dim]
"""

from __future__ import annotations

import torch
from torch import nn

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "LlamaForSequenceClassification", "LlamaModel",
                           "MistralForCausalLM", "MistralForSequenceClassification",
                           "Qwen2ForCausalLM", "Qwen2ForSequenceClassification")


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class CandidateScoringGraph(nn.Module):
    def __init__(self, backbone: nn.Module, n_layers: int, final_norm: bool):
        super().__init__()
        self.embed_tokens = backbone.embed_tokens
        self.layers = backbone.layers[:n_layers]
        self.rotary_emb = backbone.rotary_emb
        self.norm = backbone.norm if final_norm else None
        cfg = backbone.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    def forward(self, input_ids, position_ids, attention_bias, *past):
        n = input_ids.shape[0]
        h = self.embed_tokens(input_ids)[None]  # [1, n, d]
        cos, sin = self.rotary_emb(h, position_ids[None])
        cos, sin = cos[:, None], sin[:, None]  # [1, 1, n, head_dim]
        new_kv = []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(1, n, self.n_heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(1, n, self.n_kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(1, n, self.n_kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            new_kv += [k[0].transpose(0, 1), v[0].transpose(0, 1)]  # [n, kv_heads, head_dim]
            keys = torch.cat([past[2 * i].permute(1, 0, 2)[None], k], dim=2)
            values = torch.cat([past[2 * i + 1].permute(1, 0, 2)[None], v], dim=2)
            rep = self.n_heads // self.n_kv_heads
            keys = keys.repeat_interleave(rep, dim=1)
            values = values.repeat_interleave(rep, dim=1)
            scores = (q @ keys.transpose(-1, -2)) * (self.head_dim ** -0.5) + attention_bias
            out = (torch.softmax(scores, dim=-1) @ values).transpose(1, 2).reshape(1, n, -1)
            h = h + attn.o_proj(out)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        if self.norm is not None:
            h = self.norm(h)
        return (h[0], *new_kv)


def io_names(n_layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_{kind}_{i}" for i in range(n_layers) for kind in ("key", "value")]
    new = [f"new_{kind}_{i}" for i in range(n_layers) for kind in ("key", "value")]
    return ["input_ids", "position_ids", "attention_bias", *past], ["hidden", *new]


def export_graph(graph: CandidateScoringGraph, path, opset: int = 18) -> None:
    n_layers = len(graph.layers)
    inputs, outputs = io_names(n_layers)
    past_len, n = 3, 2
    kv = torch.zeros(past_len, graph.n_kv_heads, graph.head_dim)
    example = (
        torch.tensor([5, 6]),
        torch.tensor([3, 3]),
        torch.zeros(n, past_len + n),
        *[kv.clone() for _ in range(2 * n_layers)],
    )
    dynamic = {"input_ids": {0: "n"}, "position_ids": {0: "n"}, "attention_bias": {0: "n", 1: "total"},
               "hidden": {0: "n"}}
    dynamic.update({name: {0: "past"} for name in inputs[3:]})
    dynamic.update({name: {0: "n"} for name in outputs[1:]})
    with torch.no_grad():
        torch.onnx.export(graph, example, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
