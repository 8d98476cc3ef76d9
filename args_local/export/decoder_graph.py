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

import copy

import torch
from torch import nn

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "LlamaForSequenceClassification", "LlamaModel",
                           "MistralForCausalLM", "MistralForSequenceClassification",
                           "Qwen2ForCausalLM", "Qwen2ForSequenceClassification")


def _fused(linears: list[nn.Linear]) -> nn.Linear:
    """One Linear computing several side by side (outputs concatenated in order)."""
    has_bias = linears[0].bias is not None
    fused = nn.Linear(linears[0].in_features, sum(l.out_features for l in linears), bias=has_bias)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([l.weight for l in linears]))
        if has_bias:
            fused.bias.copy_(torch.cat([l.bias for l in linears]))
    return fused


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
        # One matmul for q, k, v and one for gate, up: fewer, wider matmuls run faster at k rows
        self.qkv = nn.ModuleList(_fused([l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj])
                                 for l in self.layers)
        self.gate_up = nn.ModuleList(_fused([l.mlp.gate_proj, l.mlp.up_proj]) for l in self.layers)
        # Own copies of what int8 smoothing rescales (smoothing.py): the source model stays as it was
        self.input_norm = nn.ModuleList(copy.deepcopy(l.input_layernorm) for l in self.layers)
        self.post_norm = nn.ModuleList(copy.deepcopy(l.post_attention_layernorm) for l in self.layers)
        self.down = nn.ModuleList(copy.deepcopy(l.mlp.down_proj) for l in self.layers)

    def forward(self, input_ids, position_ids, attention_bias, *past):
        # Shapes are written with -1 and constants only: a size read from a tensor becomes a chain
        # of Shape/Gather/Concat nodes per layer, which cost as much as the matmuls at k = 10.
        kv, rep, dim = self.n_kv_heads, self.n_heads // self.n_kv_heads, self.head_dim
        half = dim // 2
        h = self.embed_tokens(input_ids)  # [n, d]
        cos, sin = self.rotary_emb(h[None], position_ids[None])
        cos, sin = cos[0], sin[0]  # [n, head_dim]
        # grouped-query attention without copying keys per head: the rep query heads that share a
        # key/value head are stacked along the rows (r * n + t), so each sees the bias of its token t
        bias = attention_bias.repeat(rep, 1)  # [rep * n, total]
        new_kv = []

        def rope(x):  # x [n, heads, dim]
            c, s = cos[:, None], sin[:, None]
            return x * c + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * s

        for i, layer in enumerate(self.layers):
            x = self.input_norm[i](h)
            qk, v = self.qkv[i](x).split([(kv * rep + kv) * dim, kv * dim], dim=-1)
            q, k = rope(qk.reshape(-1, kv * rep + kv, dim)).split([kv * rep, kv], dim=1)  # one rope for both
            v = v.reshape(-1, kv, dim)
            new_kv += [k, v]  # [n, kv_heads, head_dim]
            keys = torch.cat([past[2 * i], k], dim=0).permute(1, 2, 0)  # [kv, dim, total]
            values = torch.cat([past[2 * i + 1], v], dim=0).transpose(0, 1)  # [kv, total, dim]
            q = q.transpose(0, 1).reshape(kv, -1, dim)  # [kv, rep * n, dim]
            probs = torch.softmax((q @ keys) * (dim ** -0.5) + bias, dim=-1)
            out = (probs @ values).reshape(kv * rep, -1, dim).transpose(0, 1).reshape(-1, kv * rep * dim)
            h = h + layer.self_attn.o_proj(out)
            inner = self.down[i].in_features
            gate, up = self.gate_up[i](self.post_norm[i](h)).split([inner, inner], dim=-1)
            h = h + self.down[i](layer.mlp.act_fn(gate) * up)
        if self.norm is not None:
            h = self.norm(h)
        return (h, *new_kv)

    def run_sequence(self, ids: list[int]):
        """The graph over one whole sequence with nothing cached (causal bias, positions 0..n-1)."""
        n = len(ids)
        empty = [torch.zeros(0, self.n_kv_heads, self.head_dim) for _ in range(2 * len(self.layers))]
        return self(torch.tensor(ids), torch.arange(n), torch.triu(torch.full((n, n), float("-inf")), 1), *empty)


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
