//! The Prometheus text exposition format, version 0.0.4, and the metric families the
//! occurrences count into.
//!
//! Format reference: <https://prometheus.io/docs/instrumenting/exposition_formats/>
//! ("Text-based format"). Every family gets a `# HELP` and a `# TYPE` line, then its
//! samples; label values escape `\`, `"` and line feeds, help texts `\` and line feeds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A family's type, as the `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the process or, for line counters, the device restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in cumulative buckets, with their sum and count.
    Histogram,
}

impl Kind {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A sample value: counts are integers, everything else a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A count.
    Int(u64),
    /// A measurement.
    Float(f64),
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Self::Int(n)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Self::Float(x)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Int(u64::from(b))
    }
}

/// A float as the format writes it: Go's `ParseFloat` forms, `+Inf`, `-Inf`, `NaN`.
fn float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Rust writes the shortest form that reads back exactly, never with an exponent.
        let _ = write!(out, "{x}");
    }
}

/// The page being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let _ = write!(self.out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample line: `name{label="value",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"");
                for c in text.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value.into() {
            Value::Int(n) => {
                let _ = write!(self.out, "{n}");
            }
            Value::Float(x) => float(&mut self.out, x),
        }
        self.out.push('\n');
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: impl Into<Value>) {
        self.family(name, help, kind);
        self.sample(name, &[], value);
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A family the page lists (the counters and histograms occurrences count into).
pub trait Family: Sync {
    /// Writes the family and its samples.
    fn render(&self, out: &mut Exposition);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere mid-update leaves a count that is still a count.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key<const N: usize>(values: [&str; N]) -> [String; N] {
    values.map(str::to_owned)
}

fn pairs<'a, const N: usize>(
    names: &'a [&'static str; N],
    values: &'a [String; N],
) -> Vec<(&'a str, &'a str)> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (*n, v.as_str()))
        .collect()
}

/// A counter with `N` labels. Series appear with their first increment.
#[derive(Debug)]
pub struct CounterVec<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    series: Mutex<BTreeMap<[String; N], u64>>,
}

impl<const N: usize> CounterVec<N> {
    /// A counter family; `name` ends in `_total`.
    pub const fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Self {
            name,
            help,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds one to the series with these label values.
    pub fn inc(&self, values: [&str; N]) {
        self.add(values, 1);
    }

    /// Adds `n` to the series with these label values.
    pub fn add(&self, values: [&str; N], n: u64) {
        *lock(&self.series).entry(key(values)).or_default() += n;
    }

    /// The count of one series (0 before its first increment).
    pub fn get(&self, values: [&str; N]) -> u64 {
        lock(&self.series).get(&key(values)).copied().unwrap_or(0)
    }
}

impl<const N: usize> Family for CounterVec<N> {
    fn render(&self, out: &mut Exposition) {
        out.family(self.name, self.help, Kind::Counter);
        for (values, n) in lock(&self.series).iter() {
            out.sample(self.name, &pairs(&self.labels, values), *n);
        }
    }
}

#[derive(Debug, Clone)]
struct HistogramSeries {
    /// Observations per bucket (not cumulative; the page sums them up).
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

/// A histogram with `N` labels and fixed upper bounds (the `+Inf` bucket is implied).
#[derive(Debug)]
pub struct HistogramVec<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    bounds: &'static [f64],
    series: Mutex<BTreeMap<[String; N], HistogramSeries>>,
}

impl<const N: usize> HistogramVec<N> {
    /// A histogram family; `bounds` ascend.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
        bounds: &'static [f64],
    ) -> Self {
        Self {
            name,
            help,
            labels,
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, values: [&str; N], x: f64) {
        let mut series = lock(&self.series);
        let s = series
            .entry(key(values))
            .or_insert_with(|| HistogramSeries {
                buckets: vec![0; self.bounds.len()],
                count: 0,
                sum: 0.0,
            });
        if let Some(i) = self.bounds.iter().position(|bound| x <= *bound) {
            s.buckets[i] += 1;
        }
        s.count += 1;
        s.sum += x;
    }

    /// How many observations one series has.
    pub fn count(&self, values: [&str; N]) -> u64 {
        lock(&self.series).get(&key(values)).map_or(0, |s| s.count)
    }
}

impl<const N: usize> Family for HistogramVec<N> {
    fn render(&self, out: &mut Exposition) {
        out.family(self.name, self.help, Kind::Histogram);
        let bucket = format!("{}_bucket", self.name);
        let sum = format!("{}_sum", self.name);
        let count = format!("{}_count", self.name);
        let bounds: Vec<String> = self
            .bounds
            .iter()
            .map(|bound| {
                let mut le = String::new();
                float(&mut le, *bound);
                le
            })
            .collect();
        for (values, s) in lock(&self.series).iter() {
            let labels = pairs(&self.labels, values);
            let with_le = |le| {
                let mut labels = labels.clone();
                labels.push(("le", le));
                labels
            };
            let mut cumulative = 0;
            for (le, n) in bounds.iter().zip(&s.buckets) {
                cumulative += n;
                out.sample(&bucket, &with_le(le), cumulative);
            }
            out.sample(&bucket, &with_le("+Inf"), s.count);
            out.sample(&sum, &labels, s.sum);
            out.sample(&count, &labels, s.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(family: &dyn Family) -> String {
        let mut out = Exposition::default();
        family.render(&mut out);
        out.finish()
    }

    #[test]
    fn counters_gauges_and_histograms_are_written_in_the_text_format() {
        static BOUNDS: [f64; 3] = [0.005, 0.1, 2.5];
        let reads = CounterVec::new("t_reads_total", "Tag reads.", ["device", "result"]);
        reads.inc(["pad", "item"]);
        reads.add(["gate", "item"], 2);
        reads.inc(["gate", "ambiguous"]);
        let empty = CounterVec::new("t_alarms_total", "Alarms.", ["station"]);
        let plain = CounterVec::new("t_starts_total", "Starts.", []);
        plain.inc([]);
        let latency = HistogramVec::new("t_seconds", "Latency.", ["message"], &BOUNDS);
        // Powers of two: the sum is exact.
        for x in [0.000_976_562_5, 0.003_906_25, 0.0625, 3.0] {
            latency.observe(["checkin"], x);
        }
        let mut gauge = Exposition::default();
        gauge.family("t_lag", "Lag.", Kind::Gauge);
        gauge.sample("t_lag", &[("consumer", "mqtt")], 7_u64);
        gauge.sample("t_lag", &[("consumer", "webhook:crm")], 0.25);
        gauge.single("t_up", "Up.", Kind::Gauge, true);
        let gauges = gauge.finish();

        // (what, page, expected)
        let rows: [(&str, String, &str); 5] = [
            (
                "a counter, series ordered by label values",
                page(&reads),
                "# HELP t_reads_total Tag reads.\n\
                 # TYPE t_reads_total counter\n\
                 t_reads_total{device=\"gate\",result=\"ambiguous\"} 1\n\
                 t_reads_total{device=\"gate\",result=\"item\"} 2\n\
                 t_reads_total{device=\"pad\",result=\"item\"} 1\n",
            ),
            (
                "a counter nothing counted yet: announced, no samples",
                page(&empty),
                "# HELP t_alarms_total Alarms.\n# TYPE t_alarms_total counter\n",
            ),
            (
                "a counter without labels",
                page(&plain),
                "# HELP t_starts_total Starts.\n# TYPE t_starts_total counter\nt_starts_total 1\n",
            ),
            (
                "a histogram: cumulative buckets, +Inf, sum and count",
                page(&latency),
                "# HELP t_seconds Latency.\n\
                 # TYPE t_seconds histogram\n\
                 t_seconds_bucket{message=\"checkin\",le=\"0.005\"} 2\n\
                 t_seconds_bucket{message=\"checkin\",le=\"0.1\"} 3\n\
                 t_seconds_bucket{message=\"checkin\",le=\"2.5\"} 3\n\
                 t_seconds_bucket{message=\"checkin\",le=\"+Inf\"} 4\n\
                 t_seconds_sum{message=\"checkin\"} 3.0673828125\n\
                 t_seconds_count{message=\"checkin\"} 4\n",
            ),
            (
                "gauges: integers, floats, a boolean as 0 or 1",
                gauges,
                "# HELP t_lag Lag.\n\
                 # TYPE t_lag gauge\n\
                 t_lag{consumer=\"mqtt\"} 7\n\
                 t_lag{consumer=\"webhook:crm\"} 0.25\n\
                 # HELP t_up Up.\n\
                 # TYPE t_up gauge\n\
                 t_up 1\n",
            ),
        ];
        for (what, got, want) in rows {
            assert_eq!(got, want, "{what}");
        }
        assert_eq!(reads.get(["gate", "item"]), 2);
        assert_eq!(reads.get(["gate", "nothing"]), 0);
        assert_eq!(latency.count(["checkin"]), 4);
    }

    #[test]
    fn label_values_and_help_texts_are_escaped() {
        // (label value, as written)
        let rows = [
            ("plain", "plain"),
            ("back\\slash", "back\\\\slash"),
            ("a \"quoted\" id", "a \\\"quoted\\\" id"),
            ("two\nlines", "two\\nlines"),
            ("tab\tand ünïcode", "tab\tand ünïcode"),
            ("", ""),
        ];
        for (value, written) in rows {
            let mut out = Exposition::default();
            out.sample("m", &[("device", value)], 1_u64);
            assert_eq!(
                out.finish(),
                format!("m{{device=\"{written}\"}} 1\n"),
                "{value:?}"
            );
        }
        let mut out = Exposition::default();
        out.family("m", "a \\ help\nwith \"quotes\"", Kind::Gauge);
        assert_eq!(
            out.finish(),
            "# HELP m a \\\\ help\\nwith \"quotes\"\n# TYPE m gauge\n"
        );
    }

    #[test]
    fn special_floats_are_written_as_the_format_spells_them() {
        // (value, as written)
        let rows = [
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (0.0, "0"),
            (1.5e-7, "0.00000015"),
            (12.0, "12"),
        ];
        for (x, written) in rows {
            let mut out = Exposition::default();
            out.sample("m", &[], x);
            assert_eq!(out.finish(), format!("m {written}\n"), "{x}");
        }
    }
}
