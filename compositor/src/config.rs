//! The user's configuration: `$XDG_CONFIG_HOME/heapland/config.toml`
//! (`~/.config/heapland/config.toml`), or the file `--config` names.
//!
//! Without a file heapland runs with the defaults, which are the commented
//! example shipped as `config.example.toml` (compiled in, so the two cannot
//! disagree). A file changes only what it names: its bindings are added to
//! the default ones and replace those on the same keys (`"none"` removes
//! one), its keyboard settings replace the default ones.
//!
//! A file that does not parse, or names an unknown key or action, is
//! reported with its line, and heapland keeps running with the last good
//! configuration.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use smithay::input::keyboard::{xkb, Keysym, ModifiersState, XkbConfig};

/// The example configuration, which is also the default.
pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// Why a configuration file was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or not heapland's keys: toml's message names the line.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}, line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// What a binding does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Runs a command line with `/bin/sh -c`, as a client of this
    /// compositor (`WAYLAND_DISPLAY` set).
    Spawn(String),
    /// Asks the focused window to close.
    Close,
    /// Focuses and raises the next window in stacking order.
    FocusNext,
    /// Focuses and raises the previous window in stacking order.
    FocusPrevious,
    /// Moves the focused window to the next output.
    MoveToNextOutput,
    /// Toggles the focused window's fullscreen state.
    Fullscreen,
    /// Toggles the focused window's maximized state.
    Maximize,
    /// Stops the compositor.
    Quit,
    /// Reads the configuration file again.
    Reload,
    /// Removes a default binding.
    None,
}

/// The modifiers a binding holds, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mods {
    pub ctrl: bool,
    pub alt: bool,
    pub shift: bool,
    pub logo: bool,
}

impl From<&ModifiersState> for Mods {
    fn from(m: &ModifiersState) -> Self {
        Mods {
            ctrl: m.ctrl,
            alt: m.alt,
            shift: m.shift,
            logo: m.logo,
        }
    }
}

/// A key with modifiers, such as `Super+Shift+Q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Combo {
    pub mods: Mods,
    /// The key's symbol without Shift or other levels (`q`, not `Q`).
    pub key: u32,
}

impl Combo {
    /// Parses `Mod+Mod+Key`; modifiers are `Super` (or `Logo`, `Mod4`),
    /// `Ctrl` (`Control`), `Alt` (`Mod1`) and `Shift`, the key an xkb keysym
    /// name (`Return`, `q`, `F1`, `Tab`), in any case.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains('\0') {
            return Err("contains a NUL character".into());
        }
        let mut parts: Vec<&str> = text.split('+').map(str::trim).collect();
        let key = parts.pop().filter(|k| !k.is_empty()).ok_or("no key")?;
        let mut mods = Mods::default();
        for m in parts {
            let flag = match m.to_ascii_lowercase().as_str() {
                "super" | "logo" | "mod4" => &mut mods.logo,
                "ctrl" | "control" => &mut mods.ctrl,
                "alt" | "mod1" => &mut mods.alt,
                "shift" => &mut mods.shift,
                _ => return Err(format!("unknown modifier {m:?} (Super, Ctrl, Alt, Shift)")),
            };
            if *flag {
                return Err(format!("modifier {m:?} given twice"));
            }
            *flag = true;
        }
        let sym = xkb::keysym_from_name(key, xkb::KEYSYM_CASE_INSENSITIVE);
        if sym.raw() == xkb::keysyms::KEY_NoSymbol {
            return Err(format!("unknown key {key:?} (an xkb keysym name)"));
        }
        Ok(Combo {
            mods,
            key: lowercase(sym).raw(),
        })
    }
}

/// The lower-case keysym of a letter, `sym` otherwise: what a key gives
/// without Shift.
pub fn lowercase(sym: Keysym) -> Keysym {
    let name = xkb::keysym_get_name(sym);
    if name.chars().count() == 1 {
        let lower = xkb::keysym_from_name(&name.to_lowercase(), xkb::KEYSYM_NO_FLAGS);
        if lower.raw() != xkb::keysyms::KEY_NoSymbol {
            return lower;
        }
    }
    sym
}

impl fmt::Display for Combo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, name) in [
            (self.mods.logo, "Super+"),
            (self.mods.ctrl, "Ctrl+"),
            (self.mods.alt, "Alt+"),
            (self.mods.shift, "Shift+"),
        ] {
            if on {
                f.write_str(name)?;
            }
        }
        f.write_str(&xkb::keysym_get_name(Keysym::new(self.key)))
    }
}

/// The pointer's look.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cursor {
    /// An xcursor theme's name; empty: `XCURSOR_THEME`, else `default`.
    pub theme: String,
    /// In logical pixels; 0: `XCURSOR_SIZE`, else 24.
    pub size: u32,
}

/// The keyboard's layout and repeat.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keyboard {
    pub rules: String,
    pub model: String,
    pub layout: String,
    pub variant: String,
    pub options: String,
    /// Repeats per second (0: no repeat).
    pub repeat_rate: i32,
    /// Milliseconds before a held key repeats.
    pub repeat_delay: i32,
}

impl Default for Keyboard {
    fn default() -> Self {
        Keyboard {
            rules: String::new(),
            model: String::new(),
            layout: String::new(),
            variant: String::new(),
            options: String::new(),
            repeat_rate: 25,
            repeat_delay: 600,
        }
    }
}

impl Keyboard {
    /// The xkb names; empty ones are xkbcommon's defaults (`XKB_DEFAULT_*`,
    /// else `evdev`/`pc105`/`us`).
    pub fn xkb(&self) -> XkbConfig<'_> {
        XkbConfig {
            rules: &self.rules,
            model: &self.model,
            layout: &self.layout,
            variant: &self.variant,
            options: (!self.options.is_empty()).then(|| self.options.clone()),
        }
    }
}

/// One output's settings (`[outputs."NAME"]`), taken when heapland starts,
/// when the output is plugged in, and when the file changes.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSettings {
    /// `WIDTHxHEIGHT` (the highest refresh rate of that size) or
    /// `WIDTHxHEIGHT@HZ`.
    pub mode: Option<String>,
    /// The output's top-left corner in the global space, logical pixels.
    pub position: Option<[i32; 2]>,
    /// Fractional scales are advertised through wp_fractional_scale.
    pub scale: Option<f64>,
    /// `normal`, `90`, `180`, `270`, `flipped`, `flipped-90`, ...
    pub transform: Option<String>,
}

impl OutputSettings {
    /// The mode as (width, height, Hz if named).
    pub fn parsed_mode(&self) -> Option<(i32, i32, Option<u32>)> {
        let text = self.mode.as_deref()?;
        let mode: crate::cli::OutputMode = text.parse().ok()?;
        Some((
            mode.width as i32,
            mode.height as i32,
            text.contains('@').then_some(mode.refresh_hz),
        ))
    }

    /// The transform, if one of wl_output's.
    pub fn parsed_transform(&self) -> Option<smithay::utils::Transform> {
        use smithay::utils::Transform;
        Some(match self.transform.as_deref()? {
            "normal" => Transform::Normal,
            "90" => Transform::_90,
            "180" => Transform::_180,
            "270" => Transform::_270,
            "flipped" => Transform::Flipped,
            "flipped-90" => Transform::Flipped90,
            "flipped-180" => Transform::Flipped180,
            "flipped-270" => Transform::Flipped270,
            _ => return None,
        })
    }
}

/// A configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    keyboard: Option<Keyboard>,
    cursor: Option<Cursor>,
    #[serde(default)]
    autostart: Vec<String>,
    #[serde(default)]
    bindings: BTreeMap<String, Action>,
    #[serde(default)]
    outputs: BTreeMap<String, OutputSettings>,
    xwayland: Option<bool>,
}

/// A configuration heapland runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub keyboard: Keyboard,
    pub cursor: Cursor,
    /// Command lines run once, when heapland starts.
    pub autostart: Vec<String>,
    pub bindings: BTreeMap<Combo, Action>,
    /// By output name.
    pub outputs: BTreeMap<String, OutputSettings>,
    /// Whether Xwayland runs (X11 apps); read once, at start.
    pub xwayland: bool,
}

impl Default for Config {
    fn default() -> Self {
        // The example is checked by a unit test: it always parses.
        Config::parse(EXAMPLE, Path::new("config.example.toml"), None).unwrap_or(Config {
            keyboard: Keyboard::default(),
            cursor: Cursor::default(),
            autostart: Vec::new(),
            bindings: BTreeMap::new(),
            outputs: BTreeMap::new(),
            xwayland: true,
        })
    }
}

impl Config {
    /// Parses `text`, the contents of `path`, over `base` (the defaults when
    /// `None`).
    pub fn parse(text: &str, path: &Path, base: Option<&Config>) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let mut config = match base {
            Some(base) => base.clone(),
            None => Config {
                keyboard: Keyboard::default(),
                cursor: Cursor::default(),
                autostart: Vec::new(),
                bindings: BTreeMap::new(),
                outputs: BTreeMap::new(),
                xwayland: true,
            },
        };
        if let Some(xwayland) = file.xwayland {
            config.xwayland = xwayland;
        }
        for (name, output) in file.outputs {
            let invalid = |what: &str, message: String| ConfigError::Invalid {
                path: path.to_owned(),
                line: line_of(text, what),
                message: format!("output {name:?}: {message}"),
            };
            if let Some(mode) = &output.mode {
                if output.parsed_mode().is_none() {
                    let why = mode
                        .parse::<crate::cli::OutputMode>()
                        .err()
                        .unwrap_or_default();
                    return Err(invalid(mode, why));
                }
            }
            if let Some(scale) = output.scale {
                if !(scale.is_finite() && scale > 0.0 && scale <= 10.0) {
                    return Err(invalid("scale", format!("scale {scale} is not in (0, 10]")));
                }
            }
            if let Some(transform) = &output.transform {
                if output.parsed_transform().is_none() {
                    return Err(invalid(
                        "transform",
                        format!("transform {transform:?} is not normal, 90, 180, 270, flipped, flipped-90, flipped-180 or flipped-270"),
                    ));
                }
            }
            config.outputs.insert(name, output);
        }
        if let Some(keyboard) = file.keyboard {
            // xkbcommon takes C strings: a NUL would end them (and panics).
            for (name, value) in [
                ("rules", &keyboard.rules),
                ("model", &keyboard.model),
                ("layout", &keyboard.layout),
                ("variant", &keyboard.variant),
                ("options", &keyboard.options),
            ] {
                if value.contains('\0') {
                    return Err(ConfigError::Invalid {
                        path: path.to_owned(),
                        line: line_of(text, name),
                        message: format!("keyboard {name} contains a NUL character"),
                    });
                }
            }
            if keyboard.repeat_rate < 0 || keyboard.repeat_delay < 0 {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    line: line_of(text, "repeat_"),
                    message: "repeat_rate and repeat_delay cannot be negative".into(),
                });
            }
            config.keyboard = keyboard;
        }
        if let Some(cursor) = file.cursor {
            if cursor.size > 256 {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    line: line_of(text, "size"),
                    message: format!("cursor size {} is over 256", cursor.size),
                });
            }
            config.cursor = cursor;
        }
        config.autostart.extend(file.autostart);
        let mut seen: BTreeMap<Combo, String> = BTreeMap::new();
        for (keys, action) in file.bindings {
            let invalid = |message: String| ConfigError::Invalid {
                path: path.to_owned(),
                line: line_of(text, &keys),
                message: format!("binding {keys:?}: {message}"),
            };
            let combo = Combo::parse(&keys).map_err(invalid)?;
            if let Some(earlier) = seen.insert(combo, keys.clone()) {
                return Err(invalid(format!("the same keys as {earlier:?}")));
            }
            if action == Action::None {
                config.bindings.remove(&combo);
            } else {
                config.bindings.insert(combo, action);
            }
        }
        Ok(config)
    }

    /// Reads `path` over the defaults; a missing file is the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path, Some(&Config::default())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// What `combo` is bound to.
    pub fn action(&self, combo: &Combo) -> Option<&Action> {
        self.bindings.get(combo)
    }
}

/// The 1-based line where `needle` first appears in `text` outside a
/// comment (1 if nowhere).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| !l.trim_start().starts_with('#') && l.contains(needle))
        .map_or(1, |i| i + 1)
}

/// The file read when `--config` is not given:
/// `$XDG_CONFIG_HOME/heapland/config.toml`, else under `$HOME/.config`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("heapland").join("config.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combo(text: &str) -> Combo {
        Combo::parse(text).unwrap()
    }

    #[test]
    fn the_example_is_the_default_and_opens_a_terminal() {
        let config = Config::parse(EXAMPLE, Path::new("example"), None).unwrap();
        assert_eq!(config, Config::default());
        assert!(matches!(
            config.action(&combo("Super+Return")),
            Some(Action::Spawn(_))
        ));
        for action in [
            Action::Close,
            Action::FocusNext,
            Action::FocusPrevious,
            Action::MoveToNextOutput,
            Action::Fullscreen,
            Action::Maximize,
            Action::Quit,
            Action::Reload,
        ] {
            assert!(
                config.bindings.values().any(|a| *a == action),
                "no default binding for {action:?}"
            );
        }
    }

    #[test]
    fn combos_ignore_case_and_order_of_modifiers() {
        assert_eq!(combo("super+shift+q"), combo("Shift+Super+Q"));
        assert_eq!(combo("Mod4+Return"), combo("Logo+return"));
        assert_ne!(combo("Super+q"), combo("Super+Shift+q"));
        assert_eq!(combo("Super+Shift+Q").to_string(), "Super+Shift+q");
        assert!(Combo::parse("Hyper+q").unwrap_err().contains("Hyper"));
        assert!(Combo::parse("Super+Nokey").unwrap_err().contains("Nokey"));
        assert!(Combo::parse("Super+").is_err());
        assert!(Combo::parse("Ctrl+Ctrl+a").is_err());
    }

    #[test]
    fn a_file_adds_replaces_and_removes_bindings_over_the_defaults() {
        let text = r#"
autostart = ["swaybg -c '#203040'"]

[keyboard]
layout = "de"
repeat_rate = 30

[bindings]
"Super+Return" = { spawn = "xterm" }
"Super+Shift+Q" = "none"
"Ctrl+Alt+T" = { spawn = "foot" }
"#;
        let config = Config::parse(text, Path::new("c"), Some(&Config::default())).unwrap();
        assert_eq!(
            config.action(&combo("Super+Return")),
            Some(&Action::Spawn("xterm".into()))
        );
        assert_eq!(config.action(&combo("Super+Shift+Q")), None);
        assert_eq!(
            config.action(&combo("Ctrl+Alt+t")),
            Some(&Action::Spawn("foot".into()))
        );
        assert_eq!(config.action(&combo("Super+Tab")), Some(&Action::FocusNext));
        assert_eq!(config.keyboard.layout, "de");
        assert_eq!(config.keyboard.repeat_rate, 30);
        assert_eq!(config.keyboard.repeat_delay, 600);
        assert_eq!(config.autostart, ["swaybg -c '#203040'"]);
        assert_eq!(config.cursor, Cursor::default());
        assert!(config.xwayland);

        let cursor = "xwayland = false\n[cursor]\ntheme = \"Adwaita\"\nsize = 48\n";
        let config = Config::parse(cursor, Path::new("c"), Some(&Config::default())).unwrap();
        assert_eq!(config.cursor.theme, "Adwaita");
        assert_eq!(config.cursor.size, 48);
        assert!(!config.xwayland);
    }

    #[test]
    fn errors_name_the_line() {
        let base = Config::default();
        let bad_key = "[bindings]\n\"Super+Return\" = \"close\"\n\"Super+Bogus\" = \"close\"\n";
        let err = Config::parse(bad_key, Path::new("c.toml"), Some(&base)).unwrap_err();
        assert!(err.to_string().starts_with("c.toml, line 3: "), "{err}");
        assert!(err.to_string().contains("Bogus"), "{err}");

        let bad_action = "\n[bindings]\n\"Super+a\" = \"explode\"\n";
        let err = Config::parse(bad_action, Path::new("c.toml"), Some(&base)).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(err.to_string().contains("explode"), "{err}");

        let unknown = "[keyboard]\nlayuot = \"de\"\n";
        let err = Config::parse(unknown, Path::new("c.toml"), Some(&base)).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("layuot"), "{err}");

        let twice = "[bindings]\n\"Super+q\" = \"close\"\n\"super+Q\" = \"quit\"\n";
        let err = Config::parse(twice, Path::new("c.toml"), Some(&base)).unwrap_err();
        assert!(err.to_string().contains("the same keys as"), "{err}");

        let nul = "[keyboard]\nlayout = \"us\\u0000\"\n";
        let err = Config::parse(nul, Path::new("c.toml"), Some(&base)).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("NUL"), "{err}");
        let nul_key = "[bindings]\n\"Super+a\\u0000\" = \"close\"\n";
        let err = Config::parse(nul_key, Path::new("c.toml"), Some(&base)).unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");

        // A comment naming the key does not count as its line.
        let commented = "# repeat_rate below\n[keyboard]\nrepeat_rate = -1\n";
        let err = Config::parse(commented, Path::new("c.toml"), Some(&base)).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");

        let huge = "[cursor]\ntheme = \"Adwaita\"\nsize = 1000\n";
        let err = Config::parse(huge, Path::new("c.toml"), Some(&base)).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(err.to_string().contains("over 256"), "{err}");

        let not_toml = "[bindings\n";
        let err = Config::parse(not_toml, Path::new("c.toml"), Some(&base)).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn a_missing_file_is_the_defaults() {
        let config = Config::load(Path::new("/nonexistent/heapland/config.toml")).unwrap();
        assert_eq!(config, Config::default());
    }
}
