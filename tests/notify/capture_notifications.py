#!/usr/bin/python3
"""Owns org.freedesktop.Notifications on the session bus and records each
Notify call it receives, one JSON line per call, to the file in argv[1]
(flushed at once).  The D-Bus call is the real one detector-notify makes,
on a real dbus-daemon; only the screen is missing.  Prints "ready" once it
owns the name."""

import json
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

NAME = "org.freedesktop.Notifications"


class Server(dbus.service.Object):
    def __init__(self, bus, out):
        super().__init__(bus, "/org/freedesktop/Notifications")
        self.out, self.last = out, 0

    @dbus.service.method(NAME, in_signature="susssasa{sv}i", out_signature="u")
    def Notify(self, app, replaces, icon, summary, body, actions, hints, timeout):
        self.last += 1
        self.out.write(json.dumps({
            "id": self.last, "app": str(app), "icon": str(icon),
            "summary": str(summary), "body": str(body),
            "urgency": int(hints.get("urgency", -1)),
            "category": str(hints.get("category", "")),
            "timeout": int(timeout)}) + "\n")
        self.out.flush()
        return self.last

    @dbus.service.method(NAME, in_signature="", out_signature="as")
    def GetCapabilities(self):
        return ["body"]

    @dbus.service.method(NAME, in_signature="", out_signature="ssss")
    def GetServerInformation(self):
        return ["capture", "DetecTor tests", "1", "1.2"]


def main():
    DBusGMainLoop(set_as_default=True)
    bus = dbus.SessionBus()
    out = open(sys.argv[1], "a")
    name = dbus.service.BusName(NAME, bus, do_not_queue=True)  # noqa: F841
    server = Server(bus, out)  # noqa: F841
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
