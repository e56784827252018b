//! The builder DSL: [`CoreBuilder`], whose [`Expr`] handles overload arithmetic so a neuron
//! reads like its formula. The raw [`GraphBuilder`] (values are [`ValueId`]s) it wraps lives in
//! the IR crate and is re-exported here.
//!
//! ```
//! use flexsn_compiler::dsl::CoreBuilder;
//! use flexsn_compiler::ir::{StateInit, Surrogate};
//!
//! // LIF, decay_input, hard reset to 0, tau = 2.
//! let b = CoreBuilder::new("lif");
//! let x = b.input("x");
//! let v = b.state("v", StateInit::Const(0.0));
//! let h = v + (x - v) / 2.0;
//! let s = (h - 1.0).spike(Surrogate::Sigmoid { alpha: 4.0 });
//! b.output("s", s);
//! b.set_state("v", s * 0.0 + (1.0 - s) * h);
//! let graph = b.build().unwrap();
//! assert_eq!(graph.outputs().len(), 1);
//! ```

use std::cell::RefCell;

pub use crate::ir::builder::GraphBuilder;
use crate::ir::error::BuildError;
use crate::ir::{Op, ParamKind, StateInit, StepGraph, Surrogate, ValueId};

/// The builder DSL: declare inputs, states and params, combine [`Expr`] handles with ordinary
/// operators and methods, then name outputs and next states. See the [module docs](self).
#[derive(Debug)]
pub struct CoreBuilder {
    inner: RefCell<GraphBuilder>,
    error: RefCell<Option<BuildError>>,
}

/// A value inside a [`CoreBuilder`]. Arithmetic with other `Expr`s and with `f32` literals (on
/// either side) builds nodes.
#[derive(Clone, Copy, Debug)]
pub struct Expr<'b> {
    id: ValueId,
    b: &'b CoreBuilder,
}

impl CoreBuilder {
    /// An empty core named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        CoreBuilder {
            inner: RefCell::new(GraphBuilder::new(name)),
            error: RefCell::new(None),
        }
    }

    /// Sets the neuron's description (shown by `flexsn list` and in printed IR).
    pub fn describe(&self, d: impl Into<String>) {
        self.inner.borrow_mut().set_description(d);
    }

    fn record<T>(&self, r: Result<T, BuildError>, fallback: impl FnOnce() -> T) -> T {
        match r {
            Ok(v) => v,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                fallback()
            }
        }
    }

    fn wrap(&self, id: ValueId) -> Expr<'_> {
        Expr { id, b: self }
    }

    fn fallback_value(&self) -> ValueId {
        self.inner.borrow_mut().constant(f32::NAN)
    }

    /// Declares an input sequence.
    pub fn input(&self, name: &str) -> Expr<'_> {
        let r = self.inner.borrow_mut().add_input(name);
        let id = self.record(r, || self.fallback_value());
        self.wrap(id)
    }

    /// Declares a state; the returned value is the state after the previous step.
    pub fn state(&self, name: &str, init: StateInit) -> Expr<'_> {
        let r = self.inner.borrow_mut().add_state(name, init);
        let id = self.record(r, || self.fallback_value());
        self.wrap(id)
    }

    /// Declares a parameter.
    pub fn param(&self, name: &str, kind: ParamKind, learnable: bool) -> Expr<'_> {
        let r = self.inner.borrow_mut().add_param(name, kind, learnable);
        let id = self.record(r, || self.fallback_value());
        self.wrap(id)
    }

    /// A constant.
    pub fn constant(&self, c: f32) -> Expr<'_> {
        let id = self.inner.borrow_mut().constant(c);
        self.wrap(id)
    }

    /// Names an output.
    pub fn output(&self, name: &str, e: Expr<'_>) {
        if let Some(id) = self.own(e) {
            let r = self.inner.borrow_mut().add_output(name, id);
            self.record(r, || ());
        }
    }

    /// Sets the next value of the state called `name`.
    pub fn set_state(&self, name: &str, e: Expr<'_>) {
        if let Some(id) = self.own(e) {
            let mut inner = self.inner.borrow_mut();
            let r = inner
                .state_index(name)
                .and_then(|j| inner.set_next_state(j, id));
            drop(inner);
            self.record(r, || ());
        }
    }

    /// `select(c, a, b)`: `a` where `c != 0`, else `b`.
    pub fn select<'b>(
        &'b self,
        c: impl IntoExpr<'b>,
        a: impl IntoExpr<'b>,
        b: impl IntoExpr<'b>,
    ) -> Expr<'b> {
        let (c, a, bb) = (c.into_expr(self), a.into_expr(self), b.into_expr(self));
        self.apply(Op::Select, &[c, a, bb])
    }

    fn own(&self, e: Expr<'_>) -> Option<ValueId> {
        if std::ptr::eq(e.b, self) {
            Some(e.id)
        } else {
            self.error
                .borrow_mut()
                .get_or_insert(BuildError::ForeignExpr);
            None
        }
    }

    fn apply<'b>(&'b self, op: Op, args: &[Expr<'_>]) -> Expr<'b> {
        let mut ids = Vec::with_capacity(args.len());
        for a in args {
            match self.own(*a) {
                Some(id) => ids.push(id),
                None => return self.wrap(self.fallback_value()),
            }
        }
        let r = self.inner.borrow_mut().op(op, &ids);
        let id = self.record(r, || self.fallback_value());
        self.wrap(id)
    }

    /// Finishes the graph, or returns the first error made while building it.
    pub fn build(self) -> Result<StepGraph, BuildError> {
        if let Some(e) = self.error.into_inner() {
            return Err(e);
        }
        self.inner.into_inner().finish()
    }
}

/// Anything that can stand where an expression is expected: an [`Expr`] or a literal.
pub trait IntoExpr<'b> {
    /// The expression in `b` (a literal becomes a constant node).
    fn into_expr(self, b: &'b CoreBuilder) -> Expr<'b>;
}

impl<'b> IntoExpr<'b> for Expr<'b> {
    fn into_expr(self, _: &'b CoreBuilder) -> Expr<'b> {
        self
    }
}

impl<'b> IntoExpr<'b> for f32 {
    fn into_expr(self, b: &'b CoreBuilder) -> Expr<'b> {
        b.constant(self)
    }
}

impl<'b> IntoExpr<'b> for f64 {
    fn into_expr(self, b: &'b CoreBuilder) -> Expr<'b> {
        b.constant(self as f32)
    }
}

macro_rules! unary_methods {
    ($($(#[$m:meta])* $name:ident => $op:expr;)*) => {
        $(
            #[doc = concat!("`", stringify!($op), "` of `self`.")]
            $(#[$m])* pub fn $name(self) -> Expr<'b> { self.b.apply($op, &[self]) }
        )*
    };
}

macro_rules! binary_methods {
    ($($(#[$m:meta])* $name:ident => $op:expr;)*) => {
        $(
            #[doc = concat!("`", stringify!($op), "` of `self` and `o`.")]
            $(#[$m])* pub fn $name(self, o: impl IntoExpr<'b>) -> Expr<'b> {
            let o = o.into_expr(self.b);
            self.b.apply($op, &[self, o])
        } )*
    };
}

impl<'b> Expr<'b> {
    /// The value's id in the graph being built.
    pub fn id(self) -> ValueId {
        self.id
    }

    unary_methods! {
        exp => Op::Exp; ln => Op::Log; log => Op::Log; log2 => Op::Log2; sqrt => Op::Sqrt;
        rsqrt => Op::Rsqrt; tanh => Op::Tanh; sin => Op::Sin; cos => Op::Cos; erf => Op::Erf;
        atan => Op::Atan; floor => Op::Floor; ceil => Op::Ceil;
        /// Round half to even (`torch.round`).
        round => Op::Round;
        relu => Op::Relu; sigmoid => Op::Sigmoid; sign => Op::Sign; abs => Op::Abs;
        recip => Op::Reciprocal;
        /// Identity forward, no gradient backward.
        detach => Op::Detach;
    }

    binary_methods! {
        pow => Op::Pow; powf => Op::Pow; fmod => Op::Fmod; min => Op::Min; max => Op::Max;
        eq => Op::Eq; ne => Op::Ne; lt => Op::Lt; le => Op::Le; gt => Op::Gt; ge => Op::Ge;
        /// Logical and of masks.
        and => Op::And;
        /// Logical or of masks.
        or => Op::Or;
    }

    /// `min(max(self, lo), hi)`.
    pub fn clamp(self, lo: impl IntoExpr<'b>, hi: impl IntoExpr<'b>) -> Expr<'b> {
        let (lo, hi) = (lo.into_expr(self.b), hi.into_expr(self.b));
        self.b.apply(Op::Clamp, &[self, lo, hi])
    }

    /// Treats `self` as a mask: `a` where it is non-zero, else `b`.
    pub fn select(self, a: impl IntoExpr<'b>, b: impl IntoExpr<'b>) -> Expr<'b> {
        self.b.select(self, a, b)
    }

    /// `Θ(self)` forward, the surrogate's derivative backward.
    pub fn spike(self, s: Surrogate) -> Expr<'b> {
        self.b.apply(Op::Spike(s), &[self])
    }

    /// The surrogate's smooth primitive (`spiking = false`) applied to `self`.
    pub fn surrogate_primitive(self, s: Surrogate) -> Expr<'b> {
        let Some(id) = self.b.own(self) else {
            return self;
        };
        let r = self.b.inner.borrow_mut().surrogate_primitive(s, id);
        let id = self.b.record(r, || self.b.fallback_value());
        self.b.wrap(id)
    }
}

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $op:expr) => {
        impl<'b, R: IntoExpr<'b>> std::ops::$trait<R> for Expr<'b> {
            type Output = Expr<'b>;
            fn $method(self, rhs: R) -> Expr<'b> {
                let rhs = rhs.into_expr(self.b);
                self.b.apply($op, &[self, rhs])
            }
        }
        impl<'b> std::ops::$trait<Expr<'b>> for f32 {
            type Output = Expr<'b>;
            fn $method(self, rhs: Expr<'b>) -> Expr<'b> {
                let lhs = rhs.b.constant(self);
                rhs.b.apply($op, &[lhs, rhs])
            }
        }
        impl<'b> std::ops::$trait<Expr<'b>> for f64 {
            type Output = Expr<'b>;
            fn $method(self, rhs: Expr<'b>) -> Expr<'b> {
                let lhs = rhs.b.constant(self as f32);
                rhs.b.apply($op, &[lhs, rhs])
            }
        }
    };
}

binary_operator!(Add, add, Op::Add);
binary_operator!(Sub, sub, Op::Sub);
binary_operator!(Mul, mul, Op::Mul);
binary_operator!(Div, div, Op::Div);

impl<'b> std::ops::Neg for Expr<'b> {
    type Output = Expr<'b>;
    fn neg(self) -> Expr<'b> {
        self.b.apply(Op::Neg, &[self])
    }
}

/// Logical not of a mask (`x == 0` gives 1): `!m`, or `m.not()` with [`std::ops::Not`] in scope.
impl<'b> std::ops::Not for Expr<'b> {
    type Output = Expr<'b>;
    fn not(self) -> Expr<'b> {
        self.b.apply(Op::Not, &[self])
    }
}
