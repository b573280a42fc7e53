"""``--recipe NAME``: a published residual-scaling recipe (:mod:`normstats.published.recipes`) applied to a
transformer spec, which comes back rewritten: the spec that is run, with every constant written into it.

The recipe recognises the blocks of its layout at the top level of the spec (repeats are looked through):

* pre-LN (``gpt2``, ``depth-mup``): ``res(layernorm attention) res(layernorm linear ACT linear)`` per block,
  optionally one closing ``layernorm`` (GPT-2's ``ln_f``);
* post-LN (``deepnorm``, ``admin``): ``res(attention) layernorm res(linear ACT linear) layernorm``;
* no-LN (``tfixup``, ``tfixup-decoder``): ``res(attention) res(linear ACT linear)``;

``ACT`` is any one layer without weights (``gelu``, ``relu``, ...); attention and linear layers keep their
other parameters (``heads``, ``causal``, ``fan_out``). ``N`` is the number of blocks. How each recipe is
written in the spec's terms (``res(B, alpha=A)`` is ``x + A B(x)``):

* ``gpt2``: ``attention(init=normal, normalize=none, gain=0.02, out_gain=1/sqrt(2N))`` (W_o's std
  ``0.02/sqrt(2N)``), the MLP's linears ``gain=0.02`` and ``gain=0.02/sqrt(2N)`` (``init=normal,
  normalize=none``);
* ``deepnorm``: DeepNet's ``LN(alpha x + G(x))`` is written ``res(G, alpha=1/alpha)`` followed by
  ``layernorm(eps=eps/alpha^2)``: ``LN(a z)`` with ``eps`` equals ``LN(z)`` with ``eps / a^2`` exactly
  (``a z / sqrt(a^2 v + eps) = z / sqrt(v + eps / a^2)``), forward and backward. The residual row therefore
  shows DeepNet's sum divided by ``alpha``; the layer norm's row is DeepNet's. Attention
  ``init=xavier, normalize=none, value_gain=beta, out_gain=beta`` (Q and K Xavier, gain 1), the linears
  ``init=xavier, normalize=none, gain=beta``;
* ``admin``: ``LN(omega x + f(x))`` the same way, ``res(f, alpha=1/omega)`` and ``layernorm(eps=eps/omega^2)``;
  weights as the spec has them;
* ``tfixup``, ``tfixup-decoder``: attention and linears as DeepNorm's with the T-Fixup scale for ``beta``;
* ``depth-mup``: every ``res`` gets ``alpha = 1/sqrt(2N)``; weights as the spec has them.

A spec the recipe does not fit, or one that already sets what the recipe sets (a block's ``alpha`` or
``beta``, a weight's ``init``, ``normalize``, ``gain``, ``value_gain``, ``out_gain``, a post-LN ``layernorm``'s
``eps`` is scaled, not refused), is refused in one line naming the position and what the recipe expects.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from normstats.errors import NormstatsError
from normstats.layers.norms import TORCH_EPS
from normstats.networks.spec import QUOTE, LayerNode, Node, Repeat, Residual, SpecError, format_spec
from normstats.published.recipes import RECIPES, Recipe

#: Layers that are not the activation between the MLP's two linears.
_NOT_ACTIVATION = {"linear", "attention", "self_attention", "mha", "layernorm", "rmsnorm", "conv", "mean", "token"}
#: Parameters a weight-setting recipe writes on attention and linear layers.
_WEIGHT_KEYS = ("init", "normalize", "gain", "value_gain", "out_gain")
_EXPECTS = {
    "pre-ln": "pre-LN blocks 'res(layernorm attention) res(layernorm linear ACT linear)' (then optionally one "
              "'layernorm')",
    "post-ln": "post-LN blocks 'res(attention) layernorm res(linear ACT linear) layernorm'",
    "no-ln": "blocks without layer norm 'res(attention) res(linear ACT linear)'",
}


@dataclass(frozen=True)
class AppliedRecipe:
    """A recipe applied to a spec: its name, the blocks ``N`` it counted, its constants and the spec to run."""

    name: str
    title: str
    blocks: int
    constants: dict[str, float]
    source: str
    spec: str
    nodes: tuple[Node, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "blocks": self.blocks, "constants": dict(self.constants),
                "source": self.source}

    def text(self) -> str:
        """``deepnorm (N=48: alpha=3.13, beta=0.1)`` for a title."""
        consts = ", ".join(f"{k}={v:.4g}" for k, v in self.constants.items())
        return f"{self.name} (N={self.blocks}: {consts})"


def find_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is one line with the close matches."""
    if name in RECIPES:
        return RECIPES[name]
    text = str(name)
    close = difflib.get_close_matches(text[:QUOTE], list(RECIPES), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    got = repr(text) if len(text) <= QUOTE else f"{text[:QUOTE]!r}... ({len(text):,} characters)"
    raise NormstatsError(f"--recipe must be one of: {', '.join(RECIPES)}; got {got}{hint}")


def apply_recipe(name: str, nodes: tuple[Node, ...]) -> AppliedRecipe:
    """``nodes`` (a parsed spec) rewritten by recipe ``name`` (module docstring)."""
    recipe = find_recipe(name)
    flat = _flatten(nodes)
    blocks = _match(recipe, flat)
    consts = recipe.constants(blocks)
    new: dict[int, Node] = {}
    for node in flat:
        if id(node) not in new:
            new[id(node)] = _rewrite(recipe, node, consts)
    rewritten = _rebuild(nodes, new)
    return AppliedRecipe(recipe.name, recipe.title, blocks, consts, recipe.source, format_spec(rewritten), rewritten)


def _flatten(nodes: tuple[Node, ...]) -> list[Node]:
    """The top-level residual blocks and layers, repeats expanded (the parser bounds the total)."""
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Repeat):
            body = _flatten(node.body)
            out.extend(body * node.count)
        else:
            out.append(node)
    return out


def _found(node: Node | None) -> str:
    if node is None:
        return "the end of the spec"
    text = format_spec((node,))
    text = text if len(text) <= QUOTE else text[:QUOTE] + "..."
    return f"position {node.pos}: found {text!r}"


def _fail(recipe: Recipe, node: Node | None, why: str = "") -> SpecError:
    return SpecError(f"--recipe {recipe.name} expects {_EXPECTS[recipe.layout]}; at {_found(node)}"
                     + (f" ({why})" if why else ""))


def _is(node: Node, name: str) -> bool:
    return isinstance(node, LayerNode) and node.name == name


def _attention_branch(branch: tuple[Node, ...], pre_ln: bool) -> bool:
    want = 2 if pre_ln else 1
    return len(branch) == want and (not pre_ln or _is(branch[0], "layernorm")) and \
        isinstance(branch[-1], LayerNode) and branch[-1].name in ("attention", "self_attention", "mha")


def _mlp_branch(branch: tuple[Node, ...], pre_ln: bool) -> bool:
    body = branch[1:] if pre_ln else branch
    if pre_ln and not (branch and _is(branch[0], "layernorm")):
        return False
    return len(body) == 3 and _is(body[0], "linear") and _is(body[2], "linear") and \
        isinstance(body[1], LayerNode) and body[1].name not in _NOT_ACTIVATION


def _match(recipe: Recipe, flat: list[Node]) -> int:
    """The number of blocks; a :class:`SpecError` where the spec leaves the recipe's layout."""
    layout = recipe.layout
    pre_ln = layout == "pre-ln"
    i, blocks = 0, 0
    while i < len(flat):
        if pre_ln and blocks and i == len(flat) - 1 and _is(flat[i], "layernorm"):
            break  # the closing layer norm
        unit = ("attn", "ln", "mlp", "ln") if layout == "post-ln" else ("attn", "mlp")
        for part in unit:
            node = flat[i] if i < len(flat) else None
            if node is None:
                raise _fail(recipe, None, f"block {blocks + 1} is not complete")
            if part == "ln":
                if not _is(node, "layernorm"):
                    raise _fail(recipe, node)
            else:
                ok = isinstance(node, Residual) and (
                    _attention_branch(node.branch, pre_ln) if part == "attn" else _mlp_branch(node.branch, pre_ln))
                if not ok:
                    raise _fail(recipe, node)
                _check_free(recipe, node)
            i += 1
        blocks += 1
    if not blocks:
        raise _fail(recipe, flat[0] if flat else None)
    return blocks


def _check_free(recipe: Recipe, node: Residual) -> None:
    """The recipe sets a block's alpha and beta and (for the weight recipes) its weights' parameters."""
    if node.alpha != 1.0 or node.beta != 1.0:
        raise SpecError(f"--recipe {recipe.name} sets the residual blocks' scales itself; at position {node.pos} the "
                        f"block has alpha={node.alpha:g}, beta={node.beta} (leave them at 1)")
    if recipe.name in ("admin", "depth-mup"):
        return
    for layer in node.branch:
        assert isinstance(layer, LayerNode)
        given = [k for k, _ in layer.params if k in _WEIGHT_KEYS]
        if given:
            raise SpecError(f"--recipe {recipe.name} sets the weights' {', '.join(_WEIGHT_KEYS)} itself; at position "
                            f"{layer.pos} '{layer.name}' gives {', '.join(given)}")


def _num(x: float) -> str:
    return repr(float(x))


def _with(node: LayerNode, **params: float | str) -> LayerNode:
    extra = tuple((k, v if isinstance(v, str) else _num(v)) for k, v in params.items())
    return LayerNode(node.name, node.params + extra, node.pos)


def _rewrite(recipe: Recipe, node: Node, c: dict[str, float]) -> Node:
    name = recipe.name
    if isinstance(node, LayerNode):  # a layer norm between blocks: post-LN's, rescaled; pre-LN's closing one
        if name in ("deepnorm", "admin"):
            factor = c["alpha"] if name == "deepnorm" else c["omega"]
            eps = dict(node.params).get("eps", TORCH_EPS)
            params = tuple((k, v) for k, v in node.params if k != "eps")
            return LayerNode(node.name, params + (("eps", _num(float(eps) / factor ** 2)),), node.pos)
        return node
    assert isinstance(node, Residual)
    branch = node.branch
    alpha = 1.0
    if name == "gpt2":
        branch = tuple(_gpt2_layer(layer, i == len(branch) - 1, c) for i, layer in enumerate(branch))
    elif name in ("deepnorm", "tfixup", "tfixup-decoder"):
        scale = c["beta"] if name == "deepnorm" else c["scale"]
        branch = tuple(_scaled_layer(layer, scale) for layer in branch)
    if name == "deepnorm":
        alpha = 1.0 / c["alpha"]
    elif name == "admin":
        alpha = 1.0 / c["omega"]
    elif name == "depth-mup":
        alpha = c["branch"]
    return Residual(branch, alpha, node.beta, node.pos)


def _gpt2_layer(layer: Node, last: bool, c: dict[str, float]) -> Node:
    assert isinstance(layer, LayerNode)
    if layer.name == "linear":
        return _with(layer, init="normal", normalize="none", gain=c["out_std"] if last else c["std"])
    if layer.name in ("attention", "self_attention", "mha"):
        return _with(layer, init="normal", normalize="none", gain=c["std"], out_gain=c["out_std"] / c["std"])
    return layer


def _scaled_layer(layer: Node, scale: float) -> Node:
    assert isinstance(layer, LayerNode)
    if layer.name == "linear":
        return _with(layer, init="xavier", normalize="none", gain=scale)
    if layer.name in ("attention", "self_attention", "mha"):
        return _with(layer, init="xavier", normalize="none", value_gain=scale, out_gain=scale)
    return layer


def _rebuild(nodes: tuple[Node, ...], new: dict[int, Node]) -> tuple[Node, ...]:
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Repeat):
            out.append(Repeat(node.count, _rebuild(node.body, new), node.pos))
        else:
            out.append(new.get(id(node), node))
    return tuple(out)

