//! The user's own defaults file, so `--server`, `--ca`, `--cert` and `--key` are set once.

use std::path::PathBuf;

/// A user's own defaults, set once instead of on every command line: `server`, `ca`, `cert`,
/// `key`. Read from `$XDG_CONFIG_HOME/tlschat/config.toml`, else `~/.config/tlschat/config.toml`
/// (or the file `TLSCHAT_CONFIG` names). A flag wins over the file; relative paths in the file
/// are read from the file's folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDefaults {
    /// The server's address.
    pub server: Option<String>,
    /// The CA certificate.
    pub ca: Option<PathBuf>,
    /// The user's certificate.
    pub cert: Option<PathBuf>,
    /// The user's private key.
    pub key: Option<PathBuf>,
}

impl UserDefaults {
    /// Where the file is looked for, if a home or config folder is known.
    pub fn path() -> Option<PathBuf> {
        if let Some(file) = std::env::var_os("TLSCHAT_CONFIG") {
            return Some(file.into());
        }
        let base = match std::env::var_os("XDG_CONFIG_HOME") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
        };
        Some(base.join("tlschat").join("config.toml"))
    }

    /// The file's place, for messages.
    pub fn path_hint() -> String {
        Self::path().map_or_else(
            || "~/.config/tlschat/config.toml".to_owned(),
            |p| p.display().to_string(),
        )
    }

    /// The user's defaults; none when the file does not exist. A file that exists but cannot
    /// be read or parsed is an error naming it.
    pub fn load() -> Result<Self, String> {
        match Self::path() {
            Some(path) => Self::load_from(&path),
            None => Ok(Self::default()),
        }
    }

    /// [`load`](Self::load) from the file `path`.
    pub fn load_from(path: &std::path::Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
        };
        let mut defaults: Self = toml::from_str(&text)
            .map_err(|err| format!("invalid {}: {}", path.display(), err.to_string().trim_end()))?;
        let dir = path.parent().unwrap_or_else(|| std::path::Path::new("."));
        for file in [&mut defaults.ca, &mut defaults.cert, &mut defaults.key]
            .into_iter()
            .flatten()
        {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
        Ok(defaults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_read_from_the_files_folder_and_a_missing_file_is_no_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        assert_eq!(UserDefaults::load_from(&file), Ok(UserDefaults::default()));
        std::fs::write(
            &file,
            "server = \"chat.lan\"\nca = \"ca.pem\"\ncert = \"/abs/me.pem\"\n",
        )
        .unwrap();
        let defaults = UserDefaults::load_from(&file).unwrap();
        assert_eq!(defaults.server.as_deref(), Some("chat.lan"));
        assert_eq!(defaults.ca, Some(dir.path().join("ca.pem")));
        assert_eq!(defaults.cert, Some(PathBuf::from("/abs/me.pem")));
        std::fs::write(&file, "port = 1\n").unwrap();
        let err = UserDefaults::load_from(&file).unwrap_err();
        assert!(err.contains("port") && err.contains("config.toml"), "{err}");
    }
}
