//! A tuning experiment file: which knobs to sweep (bench workload fields, broker `--set`
//! settings as `broker.<key>`, or `broker_cores`), which values, which base workload, optional
//! producer rates for throughput-vs-latency curves, repetitions, and CPU placement.
//!
//! Owns: parsing and expanding the sweep into runs (the cartesian product of knob values ×
//! rates × repetitions, repetitions outermost so compared configurations alternate). Must
//! never: run anything (plain data, unit-tested).

use std::collections::BTreeMap;

use serde::Deserialize;

/// Most runs one experiment may expand to.
pub const MAX_RUNS: usize = 2000;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Repetitions of every configuration (medians are reported).
    #[serde(default = "one")]
    pub reps: usize,
    #[serde(default = "one")]
    pub broker_cores: usize,
    /// `taskset -c` lists for the broker and the bench (e.g. "0" and "1"); none = unpinned.
    pub broker_cpus: Option<String>,
    pub bench_cpus: Option<String>,
    /// Broker `--set` settings for every run.
    #[serde(default)]
    pub broker_settings: BTreeMap<String, toml::Value>,
    /// The base bench workload (fields of a bench workload file).
    pub workload: toml::Table,
    /// A bench workload run against the same broker before the measured one (not measured);
    /// its topics become the measured workload's `topic_names` — e.g. a backlog for a
    /// `consume` workload to read.
    pub prefill: Option<toml::Table>,
    #[serde(default)]
    pub knobs: Vec<Knob>,
    /// Total producer rates to run each configuration at (0 = max throughput). Empty: the
    /// workload's own rate.
    #[serde(default)]
    pub rates: Vec<f64>,
    /// A knob value needs a broker feature that does not exist yet: the experiment is recorded
    /// as blocked, not run.
    pub blocked: Option<String>,
}

fn one() -> usize {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knob {
    pub name: String,
    pub values: Vec<toml::Value>,
}

/// Where a knob's value goes.
#[derive(Clone, Debug, PartialEq)]
pub enum KnobTarget {
    Workload(String),
    BrokerSetting(String),
    BrokerCores,
}

impl Knob {
    pub fn target(&self) -> KnobTarget {
        if self.name == "broker_cores" {
            KnobTarget::BrokerCores
        } else if let Some(key) = self.name.strip_prefix("broker.") {
            KnobTarget::BrokerSetting(key.to_string())
        } else {
            KnobTarget::Workload(self.name.clone())
        }
    }
}

/// One run of the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    pub rep: usize,
    /// (knob name, value as text) in knob order.
    pub knob_values: Vec<(String, String)>,
    pub rate: Option<f64>,
    pub broker_cores: usize,
    pub broker_settings: BTreeMap<String, String>,
    pub workload: toml::Table,
}

impl RunSpec {
    /// The configuration without rep and rate: runs with the same label are one curve.
    pub fn config_label(&self) -> String {
        if self.knob_values.is_empty() {
            return "base".into();
        }
        self.knob_values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Experiment {
    pub fn parse(text: &str) -> Result<Experiment, String> {
        let e: Experiment = toml::from_str(text).map_err(|e| format!("experiment file: {e}"))?;
        if e.name.is_empty() || !e.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("experiment name {:?}: letters, digits, - and _ only", e.name));
        }
        if e.reps == 0 || e.knobs.iter().any(|k| k.values.is_empty()) {
            return Err("reps and every knob's values must be non-empty".into());
        }
        let n = e.runs().len();
        if n > MAX_RUNS {
            return Err(format!("{n} runs, more than {MAX_RUNS}"));
        }
        Ok(e)
    }

    /// Every run, repetitions outermost.
    pub fn runs(&self) -> Vec<RunSpec> {
        let mut combos: Vec<Vec<(usize, &toml::Value)>> = vec![vec![]];
        for (i, knob) in self.knobs.iter().enumerate() {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    knob.values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((i, v));
                        c
                    })
                })
                .collect();
        }
        let rates: Vec<Option<f64>> =
            if self.rates.is_empty() { vec![None] } else { self.rates.iter().map(|r| Some(*r)).collect() };
        let mut out = Vec::new();
        for rep in 0..self.reps {
            for combo in &combos {
                for rate in &rates {
                    let mut spec = RunSpec {
                        rep,
                        knob_values: Vec::new(),
                        rate: *rate,
                        broker_cores: self.broker_cores,
                        broker_settings: self.broker_settings.iter().map(|(k, v)| (k.clone(), value_text(v))).collect(),
                        workload: self.workload.clone(),
                    };
                    for (i, value) in combo {
                        let knob = &self.knobs[*i];
                        spec.knob_values.push((knob.name.clone(), value_text(value)));
                        match knob.target() {
                            KnobTarget::Workload(field) => {
                                spec.workload.insert(field, (*value).clone());
                            }
                            KnobTarget::BrokerSetting(key) => {
                                spec.broker_settings.insert(key, value_text(value));
                            }
                            KnobTarget::BrokerCores => {
                                spec.broker_cores = value.as_integer().unwrap_or(1).max(1) as usize;
                            }
                        }
                    }
                    if let Some(r) = rate {
                        spec.workload.insert("producer_rate_per_sec".into(), toml::Value::Float(*r));
                    }
                    out.push(spec);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP: &str = r#"
        name = "batch-linger"
        reps = 2
        broker_cpus = "0"
        bench_cpus = "1"
        rates = [1000, 0]
        [broker_settings]
        "sluice.fetch.sendfile" = true
        [workload]
        kind = "produce"
        duration_secs = 3
        [[knobs]]
        name = "batch_bytes"
        values = [16384, 65536]
        [[knobs]]
        name = "broker.sluice.flush.mode"
        values = ["never", "always"]
        [[knobs]]
        name = "broker_cores"
        values = [1, 2]
    "#;

    #[test]
    fn sweeps_expand_to_the_cartesian_product_reps_outermost() {
        let e = Experiment::parse(SWEEP).unwrap();
        let runs = e.runs();
        assert_eq!(runs.len(), 2 * 2 * 2 * 2 * 2);
        assert!(runs[..16].iter().all(|r| r.rep == 0));
        let r = &runs[0];
        assert_eq!(r.workload["batch_bytes"].as_integer(), Some(16384));
        assert_eq!(r.broker_settings["sluice.flush.mode"], "never");
        assert_eq!(r.broker_settings["sluice.fetch.sendfile"], "true");
        assert_eq!(r.broker_cores, 1);
        assert_eq!(r.rate, Some(1000.0));
        assert_eq!(r.workload["producer_rate_per_sec"].as_float(), Some(1000.0));
        assert_eq!(r.config_label(), "batch_bytes=16384 broker.sluice.flush.mode=never broker_cores=1");
        let last = runs.last().unwrap();
        assert_eq!((last.broker_cores, last.rate), (2, Some(0.0)));
        assert_eq!(last.workload["batch_bytes"].as_integer(), Some(65536));
    }

    #[test]
    fn prefill_is_parsed() {
        let e = Experiment::parse(
            "name = \"x\"\n[prefill]\nkind = \"produce\"\nmessage_count = 10\n[workload]\nkind = \"consume\"\n",
        )
        .unwrap();
        assert_eq!(e.prefill.unwrap()["message_count"].as_integer(), Some(10));
    }

    #[test]
    fn bad_experiments_are_refused() {
        assert!(Experiment::parse("name = \"x y\"\n[workload]\n").is_err());
        assert!(Experiment::parse("name = \"x\"\nbogus = 1\n[workload]\n").is_err());
        assert!(Experiment::parse("name = \"x\"\n[workload]\n[[knobs]]\nname = \"a\"\nvalues = []\n").is_err());
        let e = Experiment::parse("name = \"x\"\n[workload]\nkind = \"produce\"\n").unwrap();
        assert_eq!(e.runs().len(), 1);
        assert_eq!(e.runs()[0].config_label(), "base");
    }
}
