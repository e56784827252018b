//! FlexSN cores bound by name ([`Cores`]): the golden cases `FlexSN:<name>` run with them.

use std::collections::BTreeMap;
use std::fmt;

use flexsn_compiler::ir::StepGraph;

use super::error::{BoxError, CaseError};

/// What a FlexSN case tells its core's factory.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreArgs {
    /// Hyperparameters (`params.core_kwargs`), by name.
    pub hyper: Vec<(String, f64)>,
    /// Shapes of the static inputs (`parameters`, from `tensor_shapes`), by name: a core whose
    /// param kind depends on the bound value (`Param<Dynamic>`) takes it from these.
    pub param_shapes: Vec<(String, Vec<usize>)>,
    /// Time steps of the case.
    pub t: usize,
    /// Neurons of the case (the product of the non-time dimensions).
    pub n: usize,
}

impl CoreArgs {
    /// The hyperparameter `name`.
    pub fn hyper(&self, name: &str) -> Result<f64, CaseError> {
        self.hyper
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| CaseError::MissingHyper(name.to_string()))
    }
}

/// Builds a FlexSN core's step graph from a case's [`CoreArgs`].
pub type CoreFactory = Box<dyn Fn(&CoreArgs) -> Result<StepGraph, BoxError> + Send + Sync>;

/// FlexSN cores bound by name: the cases `FlexSN:<name>` run with them.
#[derive(Default)]
pub struct Cores {
    map: BTreeMap<String, CoreFactory>,
}

impl fmt::Debug for Cores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Cores {
    /// Binds `name` to a factory (replacing an earlier binding). The factory's error may be any
    /// error type (a [`CaseError`], a `String`, ...).
    pub fn bind<E: Into<BoxError>>(
        &mut self,
        name: impl Into<String>,
        factory: impl Fn(&CoreArgs) -> Result<StepGraph, E> + Send + Sync + 'static,
    ) {
        self.map.insert(
            name.into(),
            Box::new(move |a| factory(a).map_err(Into::into)),
        );
    }

    /// The factory bound to `name`.
    pub fn get(&self, name: &str) -> Option<&CoreFactory> {
        self.map.get(name)
    }

    /// The bound names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}
