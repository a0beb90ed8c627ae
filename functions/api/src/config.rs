//! The api function's settings, read once at cold start.

use parcelwatch::config::{ConfigError, Env, KdniaoConfig, Secret};

/// Providers a new shipment can be tracked with.
pub const PROVIDERS: [&str; 2] = ["kdniao", "kuaidi100"];

/// Kdniao push verification: pushes must be signed with this AppKey and carry this EBusinessID.
#[derive(Debug, Clone)]
pub struct KdniaoPushAuth {
    pub ebusiness_id: String,
    pub app_key: Secret,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `API_KEYS`: merchant keys accepted in `x-api-key`, comma-separated (at least one).
    pub api_keys: Vec<Secret>,
    /// `DEFAULT_PROVIDER`: the provider a newly registered shipment is tracked with.
    pub default_provider: String,
    /// `KDNIAO_EBUSINESS_ID` + `KDNIAO_APP_KEY`.
    pub kdniao: KdniaoPushAuth,
    /// `KUAIDI100_SALT`; `/push/kuaidi100` answers 404 without it.
    pub kuaidi100_salt: Option<Secret>,
    /// `API_MAX_BULK`: shipments per bulk registration.
    pub max_bulk: usize,
    /// `API_MAX_BODY_BYTES`: largest request body accepted (after base64 decoding).
    pub max_body_bytes: usize,
    /// Kdniao 2002 carrier recognition for numbers the rules cannot place: on when
    /// `KDNIAO_ENDPOINT` is set (with `KDNIAO_EBUSINESS_ID`, `KDNIAO_APP_KEY`,
    /// `PROVIDER_TIMEOUT_MS`), unless `API_CARRIER_RECOGNITION=off`.
    pub recognition: Option<KdniaoConfig>,
    /// `API_MAX_RECOGNITIONS`: provider recognitions one request may spend (each is a paid
    /// 2002 call); unsure numbers past it are refused with "carrier required".
    pub max_recognitions: usize,
}

impl ApiConfig {
    pub const DEFAULT_MAX_BULK: usize = 500;
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
    pub const DEFAULT_MAX_RECOGNITIONS: usize = 50;

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let api_keys: Vec<Secret> = required(env, "API_KEYS")?
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(Secret::new)
            .collect();
        if api_keys.is_empty() {
            return Err(ConfigError::Invalid {
                name: "API_KEYS",
                reason: "holds no key".into(),
            });
        }
        let default_provider = env
            .get("DEFAULT_PROVIDER")
            .map(|p| p.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "kdniao".into());
        if !PROVIDERS.contains(&default_provider.as_str()) {
            return Err(ConfigError::Invalid {
                name: "DEFAULT_PROVIDER",
                reason: format!(
                    "`{default_provider}` is not one of {}",
                    PROVIDERS.join(", ")
                ),
            });
        }
        let max_bulk = parsed(env, "API_MAX_BULK", Self::DEFAULT_MAX_BULK)?;
        if max_bulk == 0 {
            return Err(ConfigError::Invalid {
                name: "API_MAX_BULK",
                reason: "must be at least 1".into(),
            });
        }
        let max_body_bytes = parsed(env, "API_MAX_BODY_BYTES", Self::DEFAULT_MAX_BODY_BYTES)?;
        if max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                name: "API_MAX_BODY_BYTES",
                reason: "must be at least 1024".into(),
            });
        }
        let max_recognitions = parsed(env, "API_MAX_RECOGNITIONS", Self::DEFAULT_MAX_RECOGNITIONS)?;
        if max_recognitions == 0 {
            return Err(ConfigError::Invalid {
                name: "API_MAX_RECOGNITIONS",
                reason: "must be at least 1 (API_CARRIER_RECOGNITION=off turns recognition off)"
                    .into(),
            });
        }
        let kdniao = KdniaoPushAuth {
            ebusiness_id: required(env, "KDNIAO_EBUSINESS_ID")?,
            app_key: Secret::new(required(env, "KDNIAO_APP_KEY")?),
        };
        let recognition = match recognition_switch(env)? {
            Switch::Off => None,
            Switch::On => {
                required(env, "KDNIAO_ENDPOINT")?;
                Some(KdniaoConfig::from_env(env)?)
            }
            Switch::Auto => match env.get("KDNIAO_ENDPOINT").filter(|v| !v.trim().is_empty()) {
                Some(_) => Some(KdniaoConfig::from_env(env)?),
                None => None,
            },
        };
        Ok(ApiConfig {
            api_keys,
            default_provider,
            kdniao,
            kuaidi100_salt: env
                .get("KUAIDI100_SALT")
                .filter(|s| !s.trim().is_empty())
                .map(Secret::new),
            max_bulk,
            max_body_bytes,
            recognition,
            max_recognitions,
        })
    }
}

/// `API_CARRIER_RECOGNITION`: `off`, `on` (then `KDNIAO_ENDPOINT` is required), or unset
/// (on when `KDNIAO_ENDPOINT` is set).
enum Switch {
    On,
    Off,
    Auto,
}

fn recognition_switch(env: &dyn Env) -> Result<Switch, ConfigError> {
    let Some(v) = env.get("API_CARRIER_RECOGNITION") else {
        return Ok(Switch::Auto);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "" => Ok(Switch::Auto),
        "on" => Ok(Switch::On),
        "off" => Ok(Switch::Off),
        other => Err(ConfigError::Invalid {
            name: "API_CARRIER_RECOGNITION",
            reason: format!("`{other}` is neither on nor off"),
        }),
    }
}

fn required(env: &dyn Env, key: &'static str) -> Result<String, ConfigError> {
    env.get(key)
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(key))
}

fn parsed(env: &dyn Env, key: &'static str, default: usize) -> Result<usize, ConfigError> {
    match env.get(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e| ConfigError::Invalid {
            name: key,
            reason: format!("`{v}`: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: [(&str, &str); 3] = [
        ("API_KEYS", " key-one , ,key-two"),
        ("KDNIAO_EBUSINESS_ID", "1000001"),
        ("KDNIAO_APP_KEY", "sandbox-appkey-0001"),
    ];

    #[test]
    fn defaults_apply_and_keys_are_split_and_hidden() {
        let cfg = ApiConfig::from_env(&env(&BASE)).unwrap();
        let keys: Vec<&str> = cfg.api_keys.iter().map(Secret::expose).collect();
        assert_eq!(keys, vec!["key-one", "key-two"]);
        assert_eq!(cfg.default_provider, "kdniao");
        assert_eq!(cfg.max_bulk, 500);
        assert_eq!(cfg.max_body_bytes, 1_048_576);
        assert!(cfg.kuaidi100_salt.is_none());
        assert!(
            cfg.recognition.is_none(),
            "no KDNIAO_ENDPOINT, no recognition"
        );
        assert_eq!(cfg.max_recognitions, 50);
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("key-one"), "{debug}");
        assert!(!debug.contains("sandbox-appkey"), "{debug}");
    }

    #[test]
    fn settings_are_read_and_validated() {
        let mut e = env(&BASE);
        e.insert("DEFAULT_PROVIDER".into(), "Kuaidi100".into());
        e.insert("KUAIDI100_SALT".into(), "sandbox-salt-0001".into());
        e.insert("API_MAX_BULK".into(), "20".into());
        let cfg = ApiConfig::from_env(&e).unwrap();
        assert_eq!(cfg.default_provider, "kuaidi100");
        assert_eq!(cfg.max_bulk, 20);
        assert_eq!(
            cfg.kuaidi100_salt.as_ref().map(Secret::expose),
            Some("sandbox-salt-0001")
        );

        e.insert("DEFAULT_PROVIDER".into(), "cainiao".into());
        assert!(matches!(
            ApiConfig::from_env(&e),
            Err(ConfigError::Invalid {
                name: "DEFAULT_PROVIDER",
                ..
            })
        ));
        let mut e = env(&BASE);
        e.insert("API_MAX_BULK".into(), "lots".into());
        assert!(matches!(
            ApiConfig::from_env(&e),
            Err(ConfigError::Invalid {
                name: "API_MAX_BULK",
                ..
            })
        ));
        let mut e = env(&BASE);
        e.insert("API_KEYS".into(), " , ".into());
        assert!(matches!(
            ApiConfig::from_env(&e),
            Err(ConfigError::Invalid {
                name: "API_KEYS",
                ..
            })
        ));
        let mut e = env(&BASE);
        e.remove("KDNIAO_APP_KEY");
        assert!(matches!(
            ApiConfig::from_env(&e),
            Err(ConfigError::Missing("KDNIAO_APP_KEY"))
        ));
    }

    #[test]
    fn recognition_follows_the_kdniao_endpoint_and_the_switch() {
        let mut e = env(&BASE);
        e.insert("KDNIAO_ENDPOINT".into(), "http://127.0.0.1:9/kdniao".into());
        e.insert("PROVIDER_TIMEOUT_MS".into(), "1500".into());
        e.insert("API_MAX_RECOGNITIONS".into(), "7".into());
        let cfg = ApiConfig::from_env(&e).unwrap();
        let k = cfg.recognition.as_ref().expect("recognition on");
        assert_eq!(k.endpoint, "http://127.0.0.1:9/kdniao");
        assert_eq!(k.ebusiness_id, "1000001");
        assert_eq!(k.app_key.expose(), "sandbox-appkey-0001");
        assert_eq!(k.timeout, std::time::Duration::from_millis(1500));
        assert_eq!(cfg.max_recognitions, 7);
        assert!(!format!("{cfg:?}").contains("sandbox-appkey"));

        e.insert("API_CARRIER_RECOGNITION".into(), " OFF ".into());
        assert!(ApiConfig::from_env(&e).unwrap().recognition.is_none());
        e.insert("API_CARRIER_RECOGNITION".into(), "on".into());
        assert!(ApiConfig::from_env(&e).unwrap().recognition.is_some());
        e.remove("KDNIAO_ENDPOINT");
        assert!(matches!(
            ApiConfig::from_env(&e),
            Err(ConfigError::Missing("KDNIAO_ENDPOINT"))
        ));
        e.insert("API_CARRIER_RECOGNITION".into(), "maybe".into());
        assert!(matches!(
            ApiConfig::from_env(&e),
            Err(ConfigError::Invalid {
                name: "API_CARRIER_RECOGNITION",
                ..
            })
        ));
        let mut e = env(&BASE);
        e.insert("API_MAX_RECOGNITIONS".into(), "0".into());
        assert!(matches!(
            ApiConfig::from_env(&e),
            Err(ConfigError::Invalid {
                name: "API_MAX_RECOGNITIONS",
                ..
            })
        ));
    }
}
