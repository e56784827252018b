//! Golden cases as JSON: [`load_cases`], [`parse_cases`] and the typed accessors of [`Case`].

use std::path::Path;

use serde_json::{Map, Value};

use super::error::{CaseError, LoadError};

/// One golden case: its name, its neuron kind and the raw JSON object.
#[derive(Clone, Debug)]
pub struct Case {
    /// The case's `name` (e.g. `IFNode_001`).
    pub name: String,
    /// `IFNode`, `LIFNode`, ..., `FlexSN:<core>`.
    pub neuron: String,
    raw: Map<String, Value>,
}

/// Reads every case of a golden file.
pub fn load_cases(path: impl AsRef<Path>) -> Result<Vec<Case>, LoadError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_cases(&text, &shown)
}

/// Parses the text of a golden file (`origin` names it in errors).
pub fn parse_cases(text: &str, origin: &str) -> Result<Vec<Case>, LoadError> {
    let path = || origin.to_string();
    let v: Value = serde_json::from_str(text).map_err(|source| LoadError::Json {
        path: path(),
        source,
    })?;
    let items = match v {
        Value::Array(items) => items,
        Value::Object(m) if m.contains_key("files") => {
            return Err(LoadError::Manifest { path: path() });
        }
        _ => return Err(LoadError::NotAList { path: path() }),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let bad = |why| LoadError::BadCase {
                path: path(),
                index,
                why,
            };
            let Value::Object(raw) = item else {
                return Err(bad("not a JSON object"));
            };
            let text = |key, why| {
                raw.get(key)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| bad(why))
            };
            let name = text("name", "no string `name`")?;
            let neuron = text("neuron", "no string `neuron`")?;
            Ok(Case { name, neuron, raw })
        })
        .collect()
}

impl Case {
    /// The raw JSON object.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// The value at `path` (object keys); `None` if absent or null.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let mut v = self.raw.get(*path.first()?)?;
        for k in &path[1..] {
            v = v.as_object()?.get(*k)?;
        }
        (!v.is_null()).then_some(v)
    }

    /// `T` and `N` (the product of the non-time dimensions) from `shape`.
    pub fn t_n(&self) -> Result<(usize, usize), CaseError> {
        let dims = self
            .get(&["shape"])
            .and_then(Value::as_array)
            .ok_or_else(|| CaseError::Missing("shape".into()))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| CaseError::invalid("shape", "must hold non-negative integers"))?;
        match dims.split_first() {
            Some((&t, rest)) if !rest.is_empty() => {
                // Checked: a shape whose size wraps around would pass the length checks.
                let too_large = || {
                    CaseError::invalid(
                        "shape",
                        format!("{dims:?} is too large (its size overflows)"),
                    )
                };
                let n = rest
                    .iter()
                    .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                    .ok_or_else(too_large)?;
                t.checked_mul(n).ok_or_else(too_large)?;
                Ok((t, n))
            }
            _ => Err(CaseError::invalid(
                "shape",
                format!("{dims:?} must be [T, N, ...] with at least two dimensions"),
            )),
        }
    }

    /// The tensor at `path` as `f32` (each JSON number parsed as `f64`, then cast: the golden
    /// files hold exact float32 values), or `None` when absent or null. Checks the length.
    pub fn tensor(&self, path: &[&str], len: usize) -> Result<Option<Vec<f32>>, CaseError> {
        let Some(v) = self.get(path) else {
            return Ok(None);
        };
        let name = path.join(".");
        let number = |x: &Value| match x {
            Value::Number(x) => x
                .as_f64()
                .map(|v| v as f32)
                .ok_or_else(|| CaseError::invalid(&name, format!("holds {x}, not a number"))),
            _ => Err(CaseError::invalid(
                &name,
                format!("holds a non-number: {x}"),
            )),
        };
        let values = match v {
            Value::Number(_) => vec![number(v)?],
            Value::Array(xs) => xs.iter().map(number).collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(CaseError::invalid(
                    &name,
                    format!("is not a tensor: {other}"),
                ));
            }
        };
        if values.len() != len {
            return Err(CaseError::Length {
                path: name,
                expected: len,
                got: values.len(),
            });
        }
        Ok(Some(values))
    }

    /// Like [`Case::tensor`], but absent is an error.
    pub fn required(&self, path: &[&str], len: usize) -> Result<Vec<f32>, CaseError> {
        self.tensor(path, len)?
            .ok_or_else(|| CaseError::Missing(path.join(".")))
    }

    /// Names listed at `path` (e.g. `meta.input_names`); none when absent.
    pub fn names(&self, path: &[&str]) -> Result<Vec<String>, CaseError> {
        let bad = || CaseError::invalid(path.join("."), "must be a list of names");
        match self.get(path) {
            None => Ok(vec![]),
            Some(Value::Array(xs)) => xs
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
                .collect(),
            Some(_) => Err(bad()),
        }
    }

    /// A whole number at `params.<key>`.
    pub fn usize_param(&self, key: &str) -> Result<usize, CaseError> {
        let path = format!("params.{key}");
        let v = self
            .get(&["params", key])
            .ok_or_else(|| CaseError::Missing(path.clone()))?;
        v.as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| CaseError::invalid(path, format!("= {v} is not a whole number")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_f32_bits_from_json() {
        let cases = parse_cases(
            r#"[{"name": "c", "neuron": "IFNode", "shape": [1, 2],
                 "inputs": {"x_seq": [0.30000001192092896, 1.100000023841858]}}]"#,
            "inline",
        )
        .unwrap();
        let x = cases[0].required(&["inputs", "x_seq"], 2).unwrap();
        assert_eq!(x, vec![0.3f32, 1.1f32]);
        assert!(matches!(
            cases[0].required(&["inputs", "x_seq"], 3),
            Err(CaseError::Length {
                expected: 3,
                got: 2,
                ..
            })
        ));
        assert!(matches!(
            cases[0].required(&["inputs", "y"], 3),
            Err(CaseError::Missing(p)) if p == "inputs.y"
        ));
        assert_eq!(cases[0].t_n().unwrap(), (1, 2));
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(matches!(parse_cases("{", "f"), Err(LoadError::Json { .. })));
        assert!(matches!(
            parse_cases("{}", "f"),
            Err(LoadError::NotAList { .. })
        ));
        assert!(matches!(
            parse_cases(r#"{"files": {}}"#, "f"),
            Err(LoadError::Manifest { .. })
        ));
        assert!(matches!(
            parse_cases(r#"[{"neuron": "IFNode"}]"#, "f"),
            Err(LoadError::BadCase { index: 0, .. })
        ));
    }

    #[test]
    fn bad_shapes_and_values_are_typed_errors() {
        let cases = parse_cases(
            r#"[{"name": "a", "neuron": "IFNode", "shape": [3], "x": [1, "2"], "params": {"k": -1}},
                {"name": "b", "neuron": "IFNode", "shape": [18446744073709551615, 2]}]"#,
            "inline",
        )
        .unwrap();
        assert!(matches!(cases[0].t_n(), Err(CaseError::Invalid { .. })));
        assert!(matches!(cases[1].t_n(), Err(CaseError::Invalid { .. })));
        assert!(matches!(
            cases[0].tensor(&["x"], 2),
            Err(CaseError::Invalid { .. })
        ));
        let e = cases[0].usize_param("k").unwrap_err();
        assert_eq!(e.to_string(), "`params.k` = -1 is not a whole number");
        assert!(matches!(
            cases[0].usize_param("T"),
            Err(CaseError::Missing(_))
        ));
    }
}
