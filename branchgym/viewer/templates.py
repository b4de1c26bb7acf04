"""The viewer's Jinja templates. Autoescaping is on everywhere: trajectories hold model output,
and model output can be HTML."""

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>branchgym · {{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
nav a { margin-right: 1em; } table { border-collapse: collapse; margin: .8em 0; }
td, th { border-bottom: 1px solid #ddd; padding: .25em .7em; text-align: left; }
.tree ul { list-style: none; padding-left: 1.4em; border-left: 1px dotted #aaa; margin: 0; }
.tree li { margin: .2em 0; } .env { color: #2a6a2a; } .model { color: #1f4f8f; }
.branch { color: #9b2fae; font-weight: 600; } .leaf { color: #8a5a00; font-weight: 600; }
.tok { display: inline-block; min-width: .55em; height: 1.2em; margin-right: 1px; }
.tok.word { width: auto; margin-right: 0; }
.turn { margin: .6em 0; } .text { white-space: pre-wrap; font-family: ui-monospace, monospace; }
form label { margin-right: 1em; }
</style></head>
<body><nav><a href="/">runs</a></nav><h1>{{ title }}</h1>
{% block body %}{% endblock %}</body></html>"""

CURVE = """{% macro curve(points, label) %}{% if points %}
<svg width="260" height="60" viewBox="0 0 260 60" role="img" aria-label="{{ label }}">
<rect width="260" height="60" fill="#f6f6f6"/><polyline fill="none" stroke="#1f4f8f"
stroke-width="2" points="{{ points }}"/></svg>{% else %}–{% endif %}{% endmacro %}"""

INDEX = """{% extends "base" %}{% from "curve" import curve %}{% block body %}
<table><tr><th>run</th><th>created</th><th>groups</th><th>trajectories</th>
<th>mean return</th><th>success by step</th></tr>
{% for r in runs %}<tr><td><a class="run" href="/run/{{ r.id | urlencode }}">{{ r.id }}</a></td>
<td>{{ r.created }}</td><td>{{ r.n_groups }}</td><td>{{ r.n_trajectories }}</td>
<td>{{ r.mean }}</td><td>{{ curve(r.curve, "success by step") }}</td></tr>
{% else %}<tr><td colspan="6">no runs in this store</td></tr>{% endfor %}</table>
{% endblock %}"""

RUN = """{% extends "base" %}{% from "curve" import curve %}{% block body %}
<p>success by step: {{ curve(points, "success by step") }}</p>
<form method="get"><label>task seed <input name="task" value="{{ f.task }}" size="10"></label>
<label>min return <input name="min_return" value="{{ f.min_return }}" size="5"></label>
<label>end reason <select name="end_reason"><option value="">any</option>
{% for e in end_reasons %}<option{% if e == f.end_reason %} selected{% endif %}>{{ e }}</option>
{% endfor %}</select></label><button type="submit">filter</button></form>
<table><tr><th>group</th><th>step</th><th>task</th><th>trajectories</th><th>best return</th>
<th>end reasons</th></tr>
{% for g in groups %}<tr><td><a class="group" href="/group/{{ g.id }}">group {{ g.id }}</a></td>
<td>{{ g.step }}</td><td>{{ g.env_id }} seed {{ g.seed }}</td><td>{{ g.n }}</td>
<td>{{ "%.2f" | format(g.best) }}</td><td>{{ g.ends }}</td></tr>
{% else %}<tr><td colspan="6">no group matches</td></tr>{% endfor %}</table>
{% endblock %}"""

GROUP = """{% extends "base" %}{% from "node" import node %}{% block body %}
<p>run <a href="/run/{{ run | urlencode }}">{{ run }}</a> · step {{ step }} · task
{{ task.env_id }} seed {{ task.seed }}</p>
<div class="tree"><ul>{% for r in roots %}{{ node(r) }}{% endfor %}</ul></div>
{% endblock %}"""

NODE = """{% macro node(n) %}<li><span class="{{ n.kind }}">{{ n.tag }}</span> {{ n.text }}
{% if n.mean_h is not none %}<small>H̄={{ "%.2f" | format(n.mean_h) }}</small>{% endif %}
{% if n.branches > 1 %}<span class="branch">◆ branch ×{{ n.branches }}</span>{% endif %}
{% if n.leaf %}<a class="leaf" href="/traj/{{ n.leaf.id }}">→ {{ n.leaf.end }} R={{
"%.2f" | format(n.leaf.ret) }} A={{ "%+.2f" | format(n.leaf.adv) }}</a>{% endif %}
{% if n.children %}<ul>{% for c in n.children %}{{ node(c) }}{% endfor %}</ul>{% endif %}
</li>{% endmacro %}"""

TRAJ = """{% extends "base" %}{% block body %}
<p>run <a href="/run/{{ run | urlencode }}">{{ run }}</a> · <a href="/group/{{ gid }}">group
{{ gid }}</a> · end <b>{{ traj.end_reason.value }}</b> · return {{ traj.ret }} · advantage
{{ "%+.3f" | format(traj.advantage) }} · turns {{ traj.n_turns }}</p>
{% for t in turns %}<div class="turn {{ t.kind }}"><b>{{ t.tag }}</b>
{% if t.tokens %}<div class="heat text">{% for tok in t.tokens %}<span class="tok{% if tok.text
%} word{% endif %}" style="background: rgba(220, 40, 40, {{ tok.alpha }})"
title="H={{ '%.3f' | format(tok.h) }}">{{ tok.text }}</span>{% endfor %}</div>
{% if not t.tokens[0].text %}<div class="text">{{ t.text }}</div>{% endif %}
{% else %}<div class="text">{{ t.text }}</div>{% endif %}</div>{% endfor %}
<p><small>Each generated token is shaded by its entropy (darker red: higher, square-root
scale, full at 3 nats); hover for the value.</small></p>{% endblock %}"""

TEMPLATES = {
    "base": BASE,
    "curve": CURVE,
    "index": INDEX,
    "run": RUN,
    "group": GROUP,
    "node": NODE,
    "traj": TRAJ,
}
