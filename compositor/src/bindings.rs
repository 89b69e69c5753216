//! What the configuration's key bindings do, and taking a configuration
//! into use (at start and on reload).

use smithay::{
    desktop::Window, reexports::wayland_protocols::xdg::shell::server::xdg_toplevel, utils::Point,
    wayland::shell::xdg::XdgShellHandler,
};
use tracing::{info, warn};

use crate::{
    config::{Action, Config},
    input::InputAction,
    spawn::spawn,
    state::Heapland,
    xwayland_surface::surface_of,
};

impl Heapland {
    /// Carries out a bound action; returns what only the backend can do.
    pub fn run_binding(&mut self, action: &Action) -> InputAction {
        match action {
            Action::Spawn(command_line) => spawn(command_line, &self.child_env()),
            Action::Close => {
                if let Some(window) = self.focused_window() {
                    Heapland::close_window(&window);
                }
            }
            Action::FocusNext => self.cycle_focus(true),
            Action::FocusPrevious => self.cycle_focus(false),
            Action::MoveToNextOutput => self.move_focused_to_next_output(),
            Action::Fullscreen => {
                if let Some(x11) = self.focused_window().and_then(|w| w.x11_surface().cloned()) {
                    self.toggle_x11_fullscreen(&x11);
                } else if let Some(toplevel) =
                    self.focused_window().and_then(|w| w.toplevel().cloned())
                {
                    if toplevel
                        .with_pending_state(|s| s.states.contains(xdg_toplevel::State::Fullscreen))
                    {
                        self.unfullscreen_request(toplevel);
                    } else {
                        self.fullscreen_request(toplevel, None);
                    }
                }
            }
            Action::Maximize => {
                if let Some(x11) = self.focused_window().and_then(|w| w.x11_surface().cloned()) {
                    self.toggle_x11_maximized(&x11);
                } else if let Some(toplevel) =
                    self.focused_window().and_then(|w| w.toplevel().cloned())
                {
                    if toplevel
                        .with_pending_state(|s| s.states.contains(xdg_toplevel::State::Maximized))
                    {
                        self.unmaximize_request(toplevel);
                    } else {
                        self.maximize_request(toplevel);
                    }
                }
            }
            Action::Reload => self.reload_config(),
            Action::Quit => return InputAction::Quit,
            Action::None => {}
        }
        InputAction::None
    }

    /// The window holding the keyboard focus (or one of whose popups does).
    fn focused_window(&self) -> Option<Window> {
        let focus = self.keyboard_focus_surface()?;
        self.window_of_surface(&focus).cloned()
    }

    /// Raises and focuses the bottom window (`forward`), or sends the top
    /// window to the bottom and focuses the one under it: repeated, either
    /// visits every window. Only windows that have shown something count:
    /// keyboard focus before the first configure crashes some clients.
    fn cycle_focus(&mut self, forward: bool) {
        let windows: Vec<Window> = self
            .space
            .elements()
            .filter(|w| surface_of(w).is_some_and(|s| self.is_mapped_toplevel(&s)))
            .cloned()
            .collect();
        let target = if forward {
            windows.first().cloned()
        } else if windows.len() > 1 {
            // Raising all but the top one, bottom first, leaves it at the
            // bottom and the one below it on top.
            for w in &windows[..windows.len() - 1] {
                self.space.raise_element(w, false);
            }
            windows.get(windows.len() - 2).cloned()
        } else {
            None
        };
        if let Some(surface) = target.as_ref().and_then(surface_of) {
            self.focus_surface(&surface);
        }
        self.queue_redraw_all();
    }

    /// Puts the focused window on the next output, in the order outputs
    /// were plugged (the last one's next is the first), at the same offset
    /// from the output's corner and kept inside it. A fullscreen or
    /// maximized window fills the new output instead.
    fn move_focused_to_next_output(&mut self) {
        let Some(window) = self.focused_window() else {
            return;
        };
        let (Some(location), Some(here)) = (
            self.space.element_location(&window),
            self.output_of_window(&window),
        ) else {
            return;
        };
        let Some(index) = self.outputs.iter().position(|o| *o == here) else {
            return;
        };
        let next = self.outputs[(index + 1) % self.outputs.len()].clone();
        let (Some(from), Some(to)) = (
            self.space.output_geometry(&here),
            self.space.output_geometry(&next),
        ) else {
            return;
        };
        let size = window.geometry().size;
        let offset = location - from.loc;
        let x = offset.x.clamp(0, (to.size.w - size.w).max(0));
        let y = offset.y.clamp(0, (to.size.h - size.h).max(0));
        self.space
            .map_element(window.clone(), to.loc + Point::from((x, y)), true);
        self.x11_moved(&window);
        self.refill_x11(&window);
        if let Some(toplevel) = window.toplevel().cloned() {
            let (fullscreen, maximized) = toplevel.with_pending_state(|s| {
                (
                    s.states.contains(xdg_toplevel::State::Fullscreen),
                    s.states.contains(xdg_toplevel::State::Maximized),
                )
            });
            if fullscreen {
                self.fullscreen_request(toplevel, None);
            } else if maximized {
                self.maximize_request(toplevel);
            }
        }
        self.queue_redraw_all();
    }

    /// The environment of the programs heapland starts.
    pub fn child_env(&self) -> crate::spawn::ChildEnv {
        crate::spawn::ChildEnv {
            socket_name: self.socket_name.clone(),
            x_display: self.xwayland.display,
            cursor_theme: self.cursor_theme.name().to_owned(),
            cursor_size: self.cursor_theme.size(),
        }
    }

    /// Takes `config` into use: its keyboard now, its bindings for the
    /// next key. A keymap xkb cannot build keeps the previous keyboard.
    pub fn apply_config(&mut self, mut config: Config) {
        if config.cursor != self.config.cursor {
            self.cursor_theme =
                crate::cursor_theme::CursorTheme::load(&config.cursor.theme, config.cursor.size);
            self.set_x11_cursor();
            self.queue_redraw_all();
        }
        if let Some(keyboard) = self.seat.get_keyboard() {
            if config.keyboard != self.config.keyboard {
                if let Err(err) = keyboard.set_xkb_config(self, config.keyboard.xkb()) {
                    warn!(
                        "keyboard {:?}: xkb cannot build this keymap ({err:?}); keeping the previous one",
                        config.keyboard.xkb()
                    );
                    config
                        .keyboard
                        .rules
                        .clone_from(&self.config.keyboard.rules);
                    config
                        .keyboard
                        .model
                        .clone_from(&self.config.keyboard.model);
                    config
                        .keyboard
                        .layout
                        .clone_from(&self.config.keyboard.layout);
                    config
                        .keyboard
                        .variant
                        .clone_from(&self.config.keyboard.variant);
                    config
                        .keyboard
                        .options
                        .clone_from(&self.config.keyboard.options);
                }
                keyboard
                    .change_repeat_info(config.keyboard.repeat_rate, config.keyboard.repeat_delay);
            }
        }
        let outputs_changed = config.outputs != self.config.outputs;
        self.config = config;
        if outputs_changed {
            self.apply_output_settings();
        }
    }

    /// Reads the configuration file again; a bad file is reported with its
    /// line and changes nothing.
    pub fn reload_config(&mut self) {
        let Some(path) = self.config_path.clone() else {
            return;
        };
        match Config::load(&path) {
            Ok(config) if config == self.config => {}
            Ok(config) => {
                self.apply_config(config);
                info!("configuration reloaded from {}", path.display());
            }
            Err(err) => warn!("{err}; keeping the configuration heapland runs with"),
        }
    }
}
