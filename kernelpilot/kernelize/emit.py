"""Emit a quantized model as integer-only C: nested if/else per tree (a forest sums its trees), or a
straight-line MLP. One source serves three targets:
  c    - portable fixed point: no floats, no libc, no headers (kernel modules, embedded, ctypes);
  bpf  - the same code as a `static __always_inline` function for an eBPF program (vmlinux.h types).
The function is `kp_s32 <prefix>_predict(const kp_s32 *x)`; it returns what Model.predict_int does."""
from __future__ import annotations

from kernelpilot.errors import KpError
from kernelpilot.kernelize.limits import check_limits
from kernelpilot.models.format import Model
from kernelpilot.models.predict import MLP_IN_SHIFT

PRELUDE = {
    "c": """#ifdef __KERNEL__
#include <linux/types.h>
typedef s32 kp_s32;
typedef s64 kp_s64;
#else
typedef int kp_s32;
typedef long long kp_s64;
#endif
typedef char kp_s32_is_4_bytes[sizeof(kp_s32) == 4 ? 1 : -1];
typedef char kp_s64_is_8_bytes[sizeof(kp_s64) == 8 ? 1 : -1];
#define KP_INLINE static inline
#define KP_API
#define KP_OPAQUE(v) (v)
#define KP_X(i) (x[i])
#define KP_SEQ(v) ((void)0)
/* floor(v / 2^s) without relying on how the compiler shifts negative numbers */
KP_INLINE kp_s64 kp_asr64(kp_s64 v, int s) { return v >= 0 ? (v >> s) : -((-v - 1) >> s) - 1; }
KP_INLINE kp_s64 kp_min64(kp_s64 a, kp_s64 b) { return a < b ? a : b; }
KP_INLINE kp_s64 kp_max64(kp_s64 a, kp_s64 b) { return a > b ? a : b; }
""",
    "bpf": """#ifndef KP_TYPES_DEFINED
#define KP_TYPES_DEFINED
#define KP_INLINE static __always_inline
#define KP_API static __always_inline
typedef __s32 kp_s32;
typedef __s64 kp_s64;
/* A zero the verifier cannot see through: sums of leaf constants stay imprecise, so the
 * verifier prunes the paths of one tree before the next instead of multiplying them. */
__s32 kp_opaque_zero;
#define KP_OPAQUE(v) ((v) + *(volatile __s32 *)&kp_opaque_zero)
#define KP_X(i) (((const volatile kp_s32 *)x)[i])
/* keep the sum in order: each tree's leaf is added before the next tree starts */
#define KP_SEQ(v) asm volatile("" : "+r"(v))
/* Branch-free arithmetic: no path splits for the verifier to explore (BPF's >> is arithmetic). */
static __always_inline kp_s64 kp_asr64(kp_s64 v, int s) { return v >> s; }
static __always_inline kp_s64 kp_min64(kp_s64 a, kp_s64 b)
{
	kp_s64 d = a - b, m = d >> 63;
	asm volatile("" : "+r"(m));
	return b + (d & m);
}
static __always_inline kp_s64 kp_max64(kp_s64 a, kp_s64 b)
{
	kp_s64 d = a - b, m = d >> 63;
	asm volatile("" : "+r"(m));
	return b + (d & ~m);
}
#endif
""",
}


def _tree_body(p, node: int, indent: int, out: list[str]) -> None:
    pad = "\t" * indent
    f = int(p["feature"][node])
    if f < 0:
        out.append(f"{pad}return {int(p['q_value'][node])};")
        return
    out.append(f"{pad}if (KP_X({f}) <= {int(p['q_threshold'][node])}) {{")
    _tree_body(p, int(p["left"][node]), indent + 1, out)
    out.append(f"{pad}}} else {{")
    _tree_body(p, int(p["right"][node]), indent + 1, out)
    out.append(f"{pad}}}")


def _emit_trees(m: Model, prefix: str) -> str:
    p, q = m.params, m.meta["quant"]
    parts = []
    for t, root in enumerate(p["roots"]):
        body: list[str] = []
        _tree_body(p, int(root), 1, body)
        parts.append(f"KP_INLINE kp_s32 {prefix}_tree{t}(const kp_s32 *x)\n{{\n" + "\n".join(body) + "\n}\n")
    out = m.meta["output"]
    lines = [f"KP_API kp_s32 {prefix}_predict(const kp_s32 *x)", "{"]
    if out == "label":
        lines.append(f"\treturn {prefix}_tree0(x);")
    else:
        lines.append(f"\tkp_s32 s = KP_OPAQUE({int(q['bias_q'])});")
        lines += [f"\ts += {prefix}_tree{t}(x);\n\tKP_SEQ(s);" for t in range(len(p["roots"]))]
        lines.append("\treturn s;" if out == "score" else f"\treturn s > {int(q['threshold_q'])};")
    lines.append("}")
    return "\n".join(parts) + "\n" + "\n".join(lines) + "\n"


def _dot(W, col: int, src: str, n_in: int) -> str:
    terms = [f"{int(W[i, col])} * {src}{i}" for i in range(n_in) if int(W[i, col]) != 0]
    return " + ".join(terms) if terms else "0"


def _emit_mlp(m: Model, prefix: str) -> str:
    p, q = m.params, m.meta["quant"]
    n_in, L = m.n_features, m.meta["n_layers"]
    lines = [f"KP_API kp_s32 {prefix}_predict(const kp_s32 *x)", "{",
             "\tkp_s64 d, v;", "\tkp_s32 acc;"]
    for i in range(n_in):  # input rescale to int8
        lim, off, mul = int(p["q_lim"][i]), int(p["q_off"][i]), int(p["q_mul"][i])
        lines += [f"\td = (kp_s64)KP_X({i}) - ({off}LL);",
                  f"\td = kp_min64(kp_max64(d, -{lim}LL), {lim}LL);",
                  f"\tv = kp_asr64(d * {mul}LL, {MLP_IN_SHIFT});",
                  f"\tkp_s32 a0_{i} = (kp_s32)kp_min64(kp_max64(v, -127), 127);"]
    width = n_in
    for layer in range(L):
        W, b = p[f"q_W{layer}"], p[f"q_b{layer}"]
        src = f"a{layer}_"
        if layer == L - 1:
            lines.append(f"\tacc = {int(b[0])} + {_dot(W, 0, src, width)};")
            break
        sh = int(p["q_shift"][layer])
        for j in range(W.shape[1]):
            lines += [f"\tacc = {int(b[j])} + {_dot(W, j, src, width)};",
                      f"\tkp_s32 a{layer + 1}_{j} = (kp_s32)kp_min64(kp_max64(acc, 0) >> {sh}, 127);"]
        width = W.shape[1]
    out = "\treturn acc;" if m.meta["output"] == "score" else f"\treturn acc > {int(q['threshold_q'])};"
    return "\n".join(lines + [out, "}"]) + "\n"


def emit_c(m: Model, target: str = "c", prefix: str = "kp_model", header: bool = True) -> str:
    """C source of `<prefix>_predict` for target "c" (portable) or "bpf" (inline in eBPF)."""
    if target not in PRELUDE:
        raise KpError(f"unknown C target '{target}'; expected c or bpf")
    if not prefix.isidentifier():
        raise KpError(f"'{prefix}' is not a C identifier")
    m.require_quantized()
    check_limits(m, "bpf-code" if target == "bpf" else "c")
    if m.kind in ("tree", "forest"):
        body = _emit_trees(m, prefix)
    elif m.kind == "mlp":
        body = _emit_mlp(m, prefix)
    else:
        raise KpError(f"unsupported model type {m.kind} for C code")
    names = ", ".join(f"x[{i}]={n}" for i, n in enumerate(m.feature_names))
    top = (f"/* Generated by kernelpilot: {m.kind} model, integer only.\n"
           f" * Features (int32, floor(x * 2^shift), shifts {m.meta['quant']['feature_shift']}):\n"
           f" *   {names}\n */\n")
    return (top + PRELUDE[target] if header else top) + "\n" + body
