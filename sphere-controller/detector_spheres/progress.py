"""Per-sphere bootstrap progress: a live display on a terminal, plain lines
otherwise (logs, pipes, systemd's journal)."""

import sys

BAR = 24


class Progress:
    def __init__(self, names, stream=None, live=None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.names = list(names)
        self.width = max(len(n) for n in self.names) if self.names else 0
        self.state = {n: (None, "waiting") for n in self.names}
        self.drawn = False

    def update(self, name, percent, text):
        if self.state.get(name) == (percent, text):
            return
        self.state[name] = (percent, text)
        if self.live:
            self._redraw()
        else:
            pct = "  -" if percent is None else "%3d" % percent
            self.stream.write("%s: %s%% %s\n" % (name, pct, text))
            self.stream.flush()

    def _line(self, name):
        percent, text = self.state[name]
        filled = (percent or 0) * BAR // 100
        pct = "  -" if percent is None else "%3d" % percent
        return "%-*s [%s%s] %s%% %s" % (self.width, name, "#" * filled,
                                         "." * (BAR - filled), pct, text)

    def _redraw(self):
        out = []
        if self.drawn:
            out.append("\x1b[%dA" % len(self.names))     # back to the first line
        for n in self.names:
            out.append("\r\x1b[2K" + self._line(n)[:200] + "\n")
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = True

    def finish(self):
        if self.live and not self.drawn:
            self._redraw()
