#!/usr/bin/python3
"""A GTK4 window filled with one colour, for heapland's everyday-clients test.

Usage: gtk4-window.py RRGGBB
GTK4 draws it with its default renderer and client-side decorations; the
test finds the colour in heapland's screenshot. Exits after 30 s.
"""
import sys

import gi

gi.require_version("Gtk", "4.0")
from gi.repository import GLib, Gtk  # noqa: E402

colour = sys.argv[1] if len(sys.argv) > 1 else "ff00ff"


def activate(app):
    css = Gtk.CssProvider()
    css.load_from_data(f"window.heapland {{ background: #{colour}; }}".encode())
    Gtk.StyleContext.add_provider_for_display(
        Gtk.Widget.get_display(Gtk.Label()), css, Gtk.STYLE_PROVIDER_PRIORITY_USER
    )
    win = Gtk.ApplicationWindow(application=app, title="heapland gtk4 test")
    win.add_css_class("heapland")
    win.set_default_size(300, 200)
    win.present()
    GLib.timeout_add_seconds(30, app.quit)


app = Gtk.Application(application_id="org.heapland.Gtk4Test")
app.connect("activate", activate)
sys.exit(app.run([]))
