"""Control while live: the live filter's control server, ``vbg ctl``, the control page's API.

- :mod:`.state`: what the render thread drains once per frame (effect, mirror, background,
  a new model), and the control API's operations on it (:class:`~.state.Controller`).
- :mod:`.library`: the backgrounds a request may name (bundled, the user's folder, uploads).
- :mod:`.uploads`: the private folder where a run keeps the videos sent to it.
- :mod:`.server`: HTTP on 127.0.0.1 and a Unix socket, token / Host / Origin checks.
- :mod:`.runtime`: the runtime file through which ``vbg ctl`` finds the running filter.
- :mod:`.client`: ``vbg ctl``'s side.

The API: docs/control-api.md.
"""
