//! The scan loop nest: chunks of neurons, time steps, 4×U-lane groups and a one-neuron tail.

use std::collections::HashMap;
use std::mem::offset_of;

use cranelift_codegen::ir::Type;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I64};
use cranelift_codegen::ir::{
    AbiParam, BlockArg, Function, InstBuilder, MemFlagsData, Signature, SourceLoc, StackSlot,
    StackSlotData, StackSlotKind, UserFuncName, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use super::emit::{ClifLanes, Wide, load_splat};
use super::lanes::Lanes;
use super::lower::{is_approximated, lower_op};
use super::{ClifOptions, ClifScan, CodegenError, ScanFrame};
use crate::ir::{Op, ParamKind, StepGraph, ValueId, is_zero_one};
use crate::scan::{Direction, OutputMode, ScanKernel};

/// When a node's value changes: once per call, once per time step, or per neuron and step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Call = 0,
    Step = 1,
    Neuron = 2,
}

fn levels(g: &StepGraph) -> Vec<Level> {
    let mut lv = Vec::with_capacity(g.len());
    for (_, node) in g.nodes() {
        let l = match node.op {
            Op::Const(_) => Level::Call,
            Op::Input(_) | Op::State(_) => Level::Neuron,
            Op::Param(k) => match g.params()[k as usize].kind {
                ParamKind::Shared => Level::Call,
                ParamKind::PerTime => Level::Step,
                ParamKind::PerNeuron => Level::Neuron,
            },
            _ => node
                .args
                .iter()
                .map(|a| lv[a.index()])
                .max()
                .unwrap_or(Level::Call),
        };
        lv.push(l);
    }
    lv
}

fn live(g: &StepGraph) -> Vec<bool> {
    let mut live = vec![false; g.len()];
    for r in g.roots() {
        live[r.index()] = true;
    }
    for i in (0..g.len()).rev() {
        if live[i] {
            for a in &g.node(ValueId::new(i)).args {
                live[a.index()] = true;
            }
        }
    }
    live
}

/// The order in which the neuron-level nodes are emitted: depth first from the roots (outputs,
/// then next states), each node's operands in decreasing order of the registers they need
/// (Sethi–Ullman numbers, on the DAG as if it were a tree), so that a cheap operand is not
/// computed first and held across an expensive one. Cranelift at `opt_level = none` keeps this
/// order, which then decides register pressure (and spills).
fn neuron_order(g: &StepGraph, levels: &[Level], live: &[bool]) -> Vec<ValueId> {
    let neuron = |v: ValueId| levels[v.index()] == Level::Neuron && live[v.index()];
    let mut need = vec![0u32; g.len()];
    for (v, node) in g.nodes() {
        if !neuron(v) {
            continue;
        }
        let mut ns: Vec<u32> = node.args.iter().map(|a| need[a.index()]).collect();
        ns.sort_unstable_by(|a, b| b.cmp(a));
        let mut n = ns
            .iter()
            .enumerate()
            .map(|(k, &x)| x + k as u32)
            .max()
            .unwrap_or(1)
            .max(1);
        if is_approximated(&node.op) {
            // Their inline expansions hold a few temporaries of their own.
            n = n.max(4);
        }
        need[v.index()] = n;
    }
    let mut order = Vec::new();
    let mut done = vec![false; g.len()];
    // An explicit stack (graphs can be deep): (node, operands pushed yet).
    let mut stack: Vec<(ValueId, bool)> = Vec::new();
    let roots: Vec<ValueId> = g.roots().collect();
    for r in roots {
        stack.push((r, false));
        while let Some((v, expanded)) = stack.pop() {
            if done[v.index()] || !neuron(v) {
                continue;
            }
            if expanded {
                done[v.index()] = true;
                order.push(v);
                continue;
            }
            stack.push((v, true));
            let mut args: Vec<ValueId> = g.node(v).args.clone();
            // Stable: equal needs keep operand order. Pushed in reverse so the neediest is
            // popped (emitted) first.
            args.sort_by(|a, b| need[b.index()].cmp(&need[a.index()]));
            for a in args.into_iter().rev() {
                stack.push((a, false));
            }
        }
    }
    order
}

/// The text of node `v` as in the text form, for annotations.
fn node_text(g: &StepGraph, v: ValueId) -> String {
    let node = g.node(v);
    let mut s = format!("%{} = ", v.index());
    match node.op {
        Op::Input(i) => s += &format!("input {}", g.inputs()[i as usize].name),
        Op::State(i) => s += &format!("state {}", g.states()[i as usize].name),
        Op::Param(i) => {
            let p = &g.params()[i as usize];
            s += &format!("param {} ({})", p.name, p.kind.name())
        }
        Op::Const(c) => s += &format!("const {c:?}"),
        Op::Spike(sg) => s += &format!("spike[{sg}] (Heaviside forward)"),
        other => s += other.name(),
    }
    for (i, a) in node.args.iter().enumerate() {
        s += &format!("{}%{}", if i == 0 { " " } else { ", " }, a.index());
    }
    s
}

/// A node lowered to cheaper instructions with the same result bits.
enum ExactRewrite {
    /// `x / c` as `x * r`: `c` a power of two whose reciprocal `r` is a normal float (the same
    /// real value, rounded once).
    Reciprocal(f32),
    /// `1 - m` as `m xor 1.0`, for `m` always `+0` or `1` (a reset's `1 - spike`): the bits of
    /// `1.0` turn `+0` into `1` and `1` into `+0`, and a logic instruction does not compete with
    /// the additions for the floating-point adders.
    FlipZeroOne,
}

fn exact_rewrite(g: &StepGraph, node: &crate::ir::Node) -> Option<ExactRewrite> {
    let konst = |v: ValueId| match g.node(v).op {
        Op::Const(c) => Some(c),
        _ => None,
    };
    match node.op {
        Op::Div => {
            let c = konst(node.args[1])?;
            let r = 1.0 / c;
            let pow2 = |x: f32| x.is_normal() && x.to_bits() & 0x7f_ffff == 0;
            (pow2(c) && pow2(r)).then_some(ExactRewrite::Reciprocal(r))
        }
        Op::Sub => {
            let one = konst(node.args[0])?.to_bits() == 1.0f32.to_bits();
            (one && is_zero_one(|v| g.node(v), node.args[1])).then_some(ExactRewrite::FlipZeroOne)
        }
        _ => None,
    }
}

/// The most bytes of uniform values and state buffers kept in the function's stack frame;
/// more (graphs with hundreds of states or shared params) go to the scratch memory the runtime
/// passes in [`ScanFrame::scratch`], since worker threads have small stacks.
pub(super) const MAX_STACK_AREA: usize = 256 * 1024;

/// Where the uniform values or the state buffers live: a stack slot, or scratch memory at a
/// byte offset.
#[derive(Clone, Copy)]
enum Area {
    Stack(StackSlot),
    Scratch(Value, i32),
}

/// Scratch memory is valid for the whole call (no trap) and only 16-byte aligned.
fn scratch_mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl Area {
    fn addr(self, b: &mut FunctionBuilder<'_>, off: i32) -> Value {
        match self {
            Area::Stack(s) => b.ins().stack_addr(I64, s, off),
            Area::Scratch(p, base) => b.ins().iadd_imm_s(p, (base + off) as i64),
        }
    }

    fn load(self, b: &mut FunctionBuilder<'_>, ty: Type, off: i32) -> Value {
        match self {
            Area::Stack(s) => b.ins().stack_load(I64, ty, s, off),
            Area::Scratch(p, base) => b.ins().load(ty, scratch_mem(), p, base + off),
        }
    }

    fn store(self, b: &mut FunctionBuilder<'_>, v: Value, off: i32) {
        match self {
            Area::Stack(s) => {
                b.ins().stack_store(I64, v, s, off);
            }
            Area::Scratch(p, base) => {
                b.ins().store(scratch_mem(), v, p, base + off);
            }
        }
    }
}

/// Which way [`Emitter::copy_states`] copies.
#[derive(Clone, Copy)]
enum StateCopy {
    /// Initial states into the stack buffers.
    In,
    /// Stack buffers to the final states.
    Out,
}

/// Loop bodies: `Vector(u)` handles `4 u` neurons per iteration; `Tail` one neuron.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    Vector(usize),
    Tail,
}

struct Emitter<'k> {
    k: &'k ScanKernel,
    g: &'k StepGraph,
    levels: Vec<Level>,
    live: Vec<bool>,
    annotations: Vec<String>,
    /// Index of each annotation text (graphs have hundreds of thousands of nodes).
    annotation_index: HashMap<String, u32>,
    /// Per node, the outputs whose value it is.
    outputs_of: Vec<Vec<usize>>,
    chunk: i64,
    mem: MemFlagsData,
    /// Stack slot holding the per-call and per-step values the neuron loops use (see
    /// [`Emitter::spill_uniforms`]), with each node's byte offset.
    uniforms: Option<(Area, Vec<Option<i32>>)>,
    /// Copies interleaved instruction by instruction.
    group: usize,
    /// Emission order of the neuron-level nodes ([`neuron_order`]).
    order: Vec<ValueId>,
    /// Address of the `2/π` table (read from the frame in the entry block).
    tables: Value,
    /// Fused multiply-adds in the math library ([`ClifOptions::fused`]).
    fused: bool,
}

/// Per-step pointers: row starts of the `[T, N]` buffers and the chunk's per-neuron slices.
struct Rows {
    inputs: Vec<Value>,
    outputs: Vec<Option<Value>>,
    seqs: Vec<Value>,
    per_neuron: Vec<Option<Value>>,
    /// State buffers and sum accumulators in the stack slot.
    states: Vec<Value>,
    sums: Vec<Option<Value>>,
}

impl Emitter<'_> {
    fn ann(&mut self, b: &mut FunctionBuilder<'_>, text: impl Into<String>) {
        let text = text.into();
        let idx = match self.annotation_index.get(&text) {
            Some(&i) => i,
            None => {
                let i = self.annotations.len() as u32;
                self.annotations.push(text.clone());
                self.annotation_index.insert(text, i);
                i
            }
        };
        b.set_srcloc(SourceLoc::new(idx));
    }

    /// Emits the live nodes of `level` for the `G` copies `first..first + G`, instruction by
    /// instruction interleaved (see [`Wide`]); `cv[v]` receives each node's `G` values.
    /// `leaf(b, c, op)` loads a leaf of this level for copy `c`.
    fn emit_level<const G: usize>(
        &mut self,
        b: &mut FunctionBuilder<'_>,
        level: Level,
        first: usize,
        cv: &mut [Option<[Value; G]>],
        leaf: &mut dyn FnMut(&mut FunctionBuilder<'_>, usize, &Op) -> Value,
        stores: Option<&GroupArgs<'_>>,
    ) {
        let nodes: Vec<ValueId> = if level == Level::Neuron {
            self.order.clone()
        } else {
            self.g
                .nodes()
                .map(|(v, _)| v)
                .filter(|v| self.live[v.index()] && self.levels[v.index()] == level)
                .collect()
        };
        for v in nodes {
            let i = v.index();
            let node = self.g.node(v);
            let text = node_text(self.g, v);
            self.ann(b, text);
            let val = match node.op {
                Op::Input(_) | Op::State(_) | Op::Param(_) => {
                    let mut out = [Value::from_u32(0); G];
                    for (c, o) in out.iter_mut().enumerate() {
                        *o = leaf(b, first + c, &node.op);
                    }
                    out
                }
                ref op => {
                    let mut l = Wide::<G> {
                        l: ClifLanes {
                            b,
                            tables: self.tables,
                            fused: self.fused,
                        },
                    };
                    // Constants (from the constant pool) and per-call / per-step values (from
                    // the uniform slot) are loaded where they are used, not kept in registers
                    // across the loops.
                    let uniform = |a: ValueId| match (&self.uniforms, level) {
                        (Some((area, offs)), Level::Neuron) => offs[a.index()].map(|o| (*area, o)),
                        _ => None,
                    };
                    let args: Vec<[Value; G]> = node
                        .args
                        .iter()
                        .map(|&a| match (self.g.node(a).op, uniform(a)) {
                            (Op::Const(c), _) if level != Level::Call => l.fc(c),
                            (_, Some((area, off))) => [area.load(l.l.b, F32X4, off); G],
                            _ => cv[a.index()].expect("operands are emitted first"),
                        })
                        .collect();
                    match exact_rewrite(self.g, node) {
                        Some(ExactRewrite::Reciprocal(r)) => {
                            let r = l.fc(r);
                            l.mul(args[0], r)
                        }
                        Some(ExactRewrite::FlipZeroOne) => {
                            let one = l.ic(1.0f32.to_bits() as i32);
                            let m = l.bits(args[1]);
                            let flipped = l.ixor(m, one);
                            l.float_of_bits(flipped)
                        }
                        None => lower_op(&mut l, op, &args),
                    }
                }
            };
            cv[i] = Some(val);
            if let Some(a) = stores {
                self.store_outputs(b, a, v, val);
            }
        }
    }

    /// Stores the outputs whose value is node `v` (sequence rows and sum buffers; written only
    /// here, so as soon as the value exists).
    fn store_outputs<const G: usize>(
        &mut self,
        b: &mut FunctionBuilder<'_>,
        a: &GroupArgs<'_>,
        v: ValueId,
        vs: [Value; G],
    ) {
        for o in self.outputs_of[v.index()].clone() {
            let decl = &self.g.outputs()[o];
            self.ann(b, format!("store output `{}`", decl.name));
            for (i, v) in vs.into_iter().enumerate() {
                let c = a.first + i;
                match self.k.output_modes[o] {
                    OutputMode::Sequence => {
                        (a.store)(b, v, a.rows.outputs[o].expect("sequence row"), c);
                    }
                    OutputMode::SumOverTime => {
                        let acc_base = a.rows.sums[o].expect("sum buffer");
                        let acc = (a.load)(b, acc_base, c);
                        let s = b.ins().fadd(acc, v);
                        (a.store)(b, s, acc_base, c);
                    }
                }
            }
        }
    }

    /// [`Emitter::emit_level`] for one copy of a per-call or per-step level.
    fn emit_uniform_level(
        &mut self,
        b: &mut FunctionBuilder<'_>,
        level: Level,
        vals: &mut [Option<Value>],
        leaf: &mut dyn FnMut(&mut FunctionBuilder<'_>, usize, &Op) -> Value,
    ) {
        let mut cv: Vec<Option<[Value; 1]>> = vals.iter().map(|v| v.map(|v| [v])).collect();
        self.emit_level::<1>(b, level, 0, &mut cv, leaf, None);
        for (d, s) in vals.iter_mut().zip(cv) {
            *d = s.map(|[v]| v);
        }
    }

    /// Stores the live values of `level` that neuron-level nodes use (constants excepted) into
    /// the uniform slot. The neuron loops load them at each use: left as SSA values they would
    /// hold registers across the loops (and at `opt_level = speed`, Cranelift's elaboration may
    /// sink their computation, a whole `sigmoid` say, into the innermost loop).
    fn spill_uniforms(&self, b: &mut FunctionBuilder<'_>, level: Level, vals: &[Option<Value>]) {
        let Some((area, offs)) = &self.uniforms else {
            return;
        };
        for (i, off) in offs.iter().enumerate() {
            if let (Some(off), true) = (off, self.levels[i] == level) {
                let v = vals[i].expect("uniform value emitted");
                area.store(b, v, *off);
            }
        }
    }

    /// A loop `for off in (start..end).step_by(step)` over byte offsets; `body` gets `off`.
    /// Returns with the builder in the block after the loop.
    fn counted_loop(
        b: &mut FunctionBuilder<'_>,
        start: Value,
        end: Value,
        step: i64,
        body: &mut dyn FnMut(&mut FunctionBuilder<'_>, Value),
    ) -> Value {
        let header = b.create_block();
        let lbody = b.create_block();
        let exit = b.create_block();
        let off = b.append_block_param(header, I64);
        let out = b.append_block_param(exit, I64);
        b.ins().jump(header, &[BlockArg::Value(start)]);
        b.switch_to_block(header);
        let next = b.ins().iadd_imm_s(off, step);
        let fits = b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
        b.ins()
            .brif(fits, lbody, &[], exit, &[BlockArg::Value(off)]);
        b.switch_to_block(lbody);
        body(b, off);
        let next = b.ins().iadd_imm_s(off, step);
        b.ins().jump(header, &[BlockArg::Value(next)]);
        b.switch_to_block(exit);
        out
    }

    /// Copies `len_bytes` from `src` to `dst` (or zero-fills when `src` is `None`).
    fn copy(&self, b: &mut FunctionBuilder<'_>, dst: Value, src: Option<Value>, len_bytes: Value) {
        let mem = self.mem;
        let zero = b.ins().iconst(I64, 0);
        let end = Self::counted_loop(b, zero, len_bytes, 16, &mut |b, off| {
            let d = b.ins().iadd(dst, off);
            let v = match src {
                Some(s) => {
                    let a = b.ins().iadd(s, off);
                    b.ins().load(F32X4, mem, a, 0)
                }
                None => {
                    let z = b.ins().f32const(0.0);
                    b.ins().splat(F32X4, z)
                }
            };
            b.ins().store(mem, v, d, 0);
        });
        Self::counted_loop(b, end, len_bytes, 4, &mut |b, off| {
            let d = b.ins().iadd(dst, off);
            let v = match src {
                Some(s) => {
                    let a = b.ins().iadd(s, off);
                    b.ins().load(F32, mem, a, 0)
                }
                None => b.ins().f32const(0.0),
            };
            b.ins().store(mem, v, d, 0);
        });
    }

    /// Copies every state's chunk between its stack buffer (`slot` at `j * chunk` floats) and
    /// the `[N]` array `ptrs[j] + c0_4` (the initial states in, the final states out): one loop
    /// over the states, so the code does not grow with their count.
    fn copy_states(
        &self,
        b: &mut FunctionBuilder<'_>,
        area: Option<Area>,
        ptrs: Value,
        c0_4: Value,
        len_bytes: Value,
        dir: StateCopy,
    ) {
        let states = self.g.states().len() as i64;
        let Some(area) = area.filter(|_| states > 0) else {
            return;
        };
        let zero = b.ins().iconst(I64, 0);
        let end = b.ins().iconst(I64, states * 8);
        // `off` = 8 j steps through the pointer array; the buffer of state j is `chunk * 4 * j`
        // bytes into the slot, `off * chunk / 2` (the chunk is a multiple of 16).
        let chunk_half = self.chunk / 2;
        Self::counted_loop(b, zero, end, 8, &mut |b, off| {
            let p = b.ins().iadd(ptrs, off);
            let array = b
                .ins()
                .load(I64, MemFlagsData::trusted().with_readonly(), p, 0);
            let array = b.ins().iadd(array, c0_4);
            let base = area.addr(b, 0);
            let rel = b.ins().imul_imm_s(off, chunk_half);
            let buf = b.ins().iadd(base, rel);
            match dir {
                StateCopy::In => self.copy(b, buf, Some(array), len_bytes),
                StateCopy::Out => self.copy(b, array, Some(buf), len_bytes),
            }
        });
    }

    /// One loop body at byte offset `off` within the chunk.
    fn body(
        &mut self,
        b: &mut FunctionBuilder<'_>,
        kind: Body,
        off: Value,
        rows: &Rows,
        outer: &[Option<Value>],
    ) {
        let copies = match kind {
            Body::Vector(u) => u,
            Body::Tail => 1,
        };
        let mem = self.mem;
        let addr = |b: &mut FunctionBuilder<'_>, base: Value, c: usize| {
            let a = b.ins().iadd(base, off);
            (a, 16 * c as i32)
        };
        let load = |b: &mut FunctionBuilder<'_>, base: Value, c: usize| {
            let (a, o) = addr(b, base, c);
            match kind {
                Body::Vector(_) => b.ins().load(F32X4, mem, a, o),
                Body::Tail => load_splat(b, a, mem),
            }
        };
        let store = |b: &mut FunctionBuilder<'_>, v: Value, base: Value, c: usize| {
            let (a, o) = addr(b, base, c);
            match kind {
                Body::Vector(_) => {
                    b.ins().store(mem, v, a, o);
                }
                Body::Tail => {
                    let s = b.ins().extractlane(v, 0);
                    b.ins().store(mem, s, a, o);
                }
            }
        };
        let (inputs, states, pn) = (&rows.inputs, &rows.states, &rows.per_neuron);
        let mut leaf = |b: &mut FunctionBuilder<'_>, c: usize, op: &Op| match *op {
            Op::Input(i) => load(b, inputs[i as usize], c),
            Op::State(j) => load(b, states[j as usize], c),
            Op::Param(k) => load(b, pn[k as usize].expect("per-neuron param row"), c),
            _ => unreachable!("only leaves are loaded"),
        };
        // Copies in groups of `G` interleaved instruction by instruction, each group with its
        // own loads and stores (see `group`).
        let g_size = self.group.min(copies);
        let mut first = 0;
        while first < copies {
            let args = GroupArgs {
                first,
                outer,
                rows,
                store: &store,
                load: &load,
            };
            let done = match g_size {
                4 => self.group::<4>(b, &args, &mut leaf),
                3 => self.group::<3>(b, &args, &mut leaf),
                2 => self.group::<2>(b, &args, &mut leaf),
                _ => self.group::<1>(b, &args, &mut leaf),
            };
            first += done;
        }
    }

    /// Emits copies `first..first + G` of the loop body and their stores. The stores of each
    /// group follow its arithmetic, so a group's loads stay next to their use.
    fn group<const G: usize>(
        &mut self,
        b: &mut FunctionBuilder<'_>,
        a: &GroupArgs<'_>,
        leaf: &mut dyn FnMut(&mut FunctionBuilder<'_>, usize, &Op) -> Value,
    ) -> usize {
        let g = self.g;
        let mut cv: Vec<Option<[Value; G]>> = a.outer.iter().map(|v| v.map(|v| [v; G])).collect();
        self.emit_level::<G>(b, Level::Neuron, a.first, &mut cv, leaf, Some(a));
        // Outputs that are not neuron-level values (constants, per-step values).
        let mut uniform_outs: Vec<ValueId> = g
            .outputs()
            .iter()
            .map(|d| d.value)
            .filter(|v| self.levels[v.index()] != Level::Neuron)
            .collect();
        uniform_outs.sort_unstable();
        uniform_outs.dedup();
        for v in uniform_outs {
            let vs = cv[v.index()].expect("output value emitted");
            self.store_outputs(b, a, v, vs);
        }
        // Next states go to the state buffers after every load of the old states.
        for (j, (decl, next)) in g.states().iter().zip(g.next_states()).enumerate() {
            self.ann(b, format!("store next state `{}`", decl.name));
            let vs = cv[next.index()].expect("next state emitted");
            for (i, v) in vs.into_iter().enumerate() {
                let c = a.first + i;
                if self.k.state_seqs {
                    (a.store)(b, v, a.rows.seqs[j], c);
                }
                (a.store)(b, v, a.rows.states[j], c);
            }
        }
        G
    }
}

type LoadFn<'a> = dyn Fn(&mut FunctionBuilder<'_>, Value, usize) -> Value + 'a;
type StoreFn<'a> = dyn Fn(&mut FunctionBuilder<'_>, Value, Value, usize) + 'a;

/// What [`Emitter::group`] needs from the loop body.
struct GroupArgs<'a> {
    first: usize,
    outer: &'a [Option<Value>],
    rows: &'a Rows,
    store: &'a StoreFn<'a>,
    load: &'a LoadFn<'a>,
}

/// Emits the scan function for `k`. See [`super`] for the ABI.
pub(super) fn emit(k: &ScanKernel, opts: &ClifOptions) -> Result<ClifScan, CodegenError> {
    let g = &k.graph;
    crate::verify::verify(g)?;
    if k.output_modes.len() != g.outputs().len() {
        return Err(CodegenError::OutputModes {
            modes: k.output_modes.len(),
            outputs: g.outputs().len(),
        });
    }
    let unroll = match opts.unroll {
        0 => {
            if g.len() <= 48 {
                4
            } else {
                2
            }
        }
        u @ 1..=4 => u,
        u => return Err(CodegenError::Option(format!("unroll = {u}: use 1 to 4"))),
    };
    let n_sums = k
        .output_modes
        .iter()
        .filter(|m| **m == OutputMode::SumOverTime)
        .count();
    let buffers = g.states().len() + n_sums;
    let chunk = match opts.chunk {
        0 => super::default_chunk(buffers),
        c if c % 16 == 0 && c <= 1 << 16 => c,
        c => {
            return Err(CodegenError::Option(format!(
                "chunk = {c}: use a multiple of 16 up to 65536"
            )));
        }
    };

    let mut sig = Signature::new(opts.frontend.default_call_conv);
    sig.params.push(AbiParam::new(I64));
    let mut func = Function::with_name_signature(UserFuncName::testcase(g.name()), sig);
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let mut e = Emitter {
        k,
        g,
        levels: levels(g),
        live: live(g),
        annotations: vec![],
        annotation_index: HashMap::new(),
        outputs_of: {
            let mut of = vec![vec![]; g.len()];
            for (o, d) in g.outputs().iter().enumerate() {
                of[d.value.index()].push(o);
            }
            of
        },
        chunk: chunk as i64,
        mem: MemFlagsData::new().with_notrap(),
        uniforms: None,
        order: vec![],
        tables: Value::from_u32(0),
        group: unroll,
        fused: opts.fused,
    };
    e.order = neuron_order(g, &e.levels, &e.live);
    let mem = e.mem;
    let mut uniform_offs = vec![None; g.len()];
    let uniform_bytes;
    {
        // Uniform (per-call / per-step, non-constant) values used by neuron-level nodes or
        // stored directly as outputs / next states.
        let mut used = vec![false; g.len()];
        for (v, node) in g.nodes() {
            if e.live[v.index()] && e.levels[v.index()] == Level::Neuron {
                for a in &node.args {
                    used[a.index()] = true;
                }
            }
        }
        for r in g.roots() {
            used[r.index()] = true;
        }
        let mut next = 0usize;
        for (v, node) in g.nodes() {
            let i = v.index();
            if used[i] && e.levels[i] != Level::Neuron && !matches!(node.op, Op::Const(_)) {
                uniform_offs[i] = Some(next);
                next += 16;
            }
        }
        uniform_bytes = next;
    }
    let buffer_bytes = buffers * chunk * 4;
    let area_bytes = uniform_bytes + buffer_bytes;
    if area_bytes > i32::MAX as usize {
        return Err(CodegenError::TooBig { bytes: area_bytes });
    }
    let on_stack = area_bytes <= MAX_STACK_AREA;
    let stack_slot = |b: &mut FunctionBuilder<'_>, bytes: usize| {
        (on_stack && bytes > 0).then(|| {
            Area::Stack(b.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                bytes as u32,
                4,
            )))
        })
    };
    let uniform_offs: Vec<Option<i32>> = uniform_offs
        .into_iter()
        .map(|o| o.map(|o| o as i32))
        .collect();
    if let Some(area) = stack_slot(&mut b, uniform_bytes) {
        e.uniforms = Some((area, uniform_offs.clone()));
    }
    let mut slot = stack_slot(&mut b, buffer_bytes);

    // entry: read the frame.
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let frame = b.block_params(entry)[0];
    e.ann(
        &mut b,
        "entry: read the scan frame (T, N, neuron range, buffer pointers)",
    );
    let ld = |b: &mut FunctionBuilder<'_>, base: Value, off: usize| {
        b.ins().load(
            I64,
            MemFlagsData::trusted().with_readonly(),
            base,
            off as i32,
        )
    };
    if !on_stack {
        let scratch = ld(&mut b, frame, offset_of!(ScanFrame, scratch));
        if uniform_bytes > 0 {
            e.uniforms = Some((Area::Scratch(scratch, 0), uniform_offs));
        }
        if buffer_bytes > 0 {
            slot = Some(Area::Scratch(scratch, uniform_bytes as i32));
        }
    }
    let t_len = ld(&mut b, frame, offset_of!(ScanFrame, t));
    let n_begin = ld(&mut b, frame, offset_of!(ScanFrame, n_begin));
    let n_end = ld(&mut b, frame, offset_of!(ScanFrame, n_end));
    let tables = ld(&mut b, frame, offset_of!(ScanFrame, tables));
    e.tables = tables;
    let arr = |b: &mut FunctionBuilder<'_>, field: usize, count: usize| -> Vec<Value> {
        let base = ld(b, frame, field);
        (0..count).map(|i| ld(b, base, 8 * i)).collect()
    };
    let in_ptr = arr(&mut b, offset_of!(ScanFrame, inputs), g.inputs().len());
    // Initial and final states are copied by one loop over the states (below), which reads
    // their pointers from the frame: code and live values independent of the state count.
    let init_arr = ld(&mut b, frame, offset_of!(ScanFrame, init_states));
    let par_ptr = arr(&mut b, offset_of!(ScanFrame, params), g.params().len());
    let out_ptr = arr(&mut b, offset_of!(ScanFrame, outputs), g.outputs().len());
    let seq_ptr = if k.state_seqs {
        arr(&mut b, offset_of!(ScanFrame, state_seqs), g.states().len())
    } else {
        vec![]
    };
    let fin_arr = ld(&mut b, frame, offset_of!(ScanFrame, final_states));

    // Values computed once per call: constants and shared params.
    let mut call_vals: Vec<Option<Value>> = vec![None; g.len()];
    {
        let par_ptr = par_ptr.clone();
        let mut leaf = |b: &mut FunctionBuilder<'_>, _c: usize, op: &Op| match *op {
            Op::Param(k) => load_splat(b, par_ptr[k as usize], mem),
            _ => unreachable!("only shared params are per-call leaves"),
        };
        e.emit_uniform_level(&mut b, Level::Call, &mut call_vals, &mut leaf);
    }
    e.spill_uniforms(&mut b, Level::Call, &call_vals);

    let chunk_hdr = b.create_block();
    let chunk_body = b.create_block();
    let exit = b.create_block();
    let c0 = b.append_block_param(chunk_hdr, I64);
    b.ins().jump(chunk_hdr, &[BlockArg::Value(n_begin)]);

    b.switch_to_block(chunk_hdr);
    e.ann(&mut b, "chunk loop: next chunk of neurons");
    let more = b.ins().icmp(IntCC::UnsignedLessThan, c0, n_end);
    b.ins().brif(more, chunk_body, &[], exit, &[]);

    b.switch_to_block(chunk_body);
    e.ann(
        &mut b,
        "chunk: copy initial states into the stack buffer, zero the sums",
    );
    let rest = b.ins().isub(n_end, c0);
    let cmax = b.ins().iconst(I64, e.chunk);
    let clen = b.ins().umin(rest, cmax);
    let clen4 = b.ins().ishl_imm_u(clen, 2);
    let c0_4 = b.ins().ishl_imm_u(c0, 2);
    let buf = |b: &mut FunctionBuilder<'_>, i: usize| {
        let area = slot.expect("a buffer area exists when buffers are used");
        area.addr(b, (i * chunk * 4) as i32)
    };
    let state_bufs: Vec<Value> = (0..g.states().len()).map(|j| buf(&mut b, j)).collect();
    let mut sum_bufs: Vec<Option<Value>> = vec![None; g.outputs().len()];
    {
        let mut next = g.states().len();
        for (o, m) in k.output_modes.iter().enumerate() {
            if *m == OutputMode::SumOverTime {
                sum_bufs[o] = Some(buf(&mut b, next));
                next += 1;
            }
        }
    }
    e.copy_states(&mut b, slot, init_arr, c0_4, clen4, StateCopy::In);
    for sb in sum_bufs.iter().flatten() {
        e.copy(&mut b, *sb, None, clen4);
    }
    let step_hdr = b.create_block();
    let step_body = b.create_block();
    let chunk_end = b.create_block();
    let s = b.append_block_param(step_hdr, I64);
    let zero = b.ins().iconst(I64, 0);
    b.ins().jump(step_hdr, &[BlockArg::Value(zero)]);

    b.switch_to_block(step_hdr);
    e.ann(&mut b, "time loop: next step");
    let more = b.ins().icmp(IntCC::UnsignedLessThan, s, t_len);
    b.ins().brif(more, step_body, &[], chunk_end, &[]);

    b.switch_to_block(step_body);
    e.ann(
        &mut b,
        match k.direction {
            Direction::Forward => "step: t = s; row pointers for step t",
            Direction::Reverse => "step: t = T - 1 - s (reverse scan); row pointers for step t",
        },
    );
    let t = match k.direction {
        Direction::Forward => s,
        Direction::Reverse => {
            let tm1 = b.ins().iadd_imm_s(t_len, -1);
            b.ins().isub(tm1, s)
        }
    };
    // Row t of the i-th [T, N] buffer starts `t * pitches[i]` floats after its pointer. The
    // pitches are read here, once per step, rather than held in registers across the loops.
    let pitches = ld(&mut b, frame, offset_of!(ScanFrame, pitches));
    let row_of = |b: &mut FunctionBuilder<'_>, i: usize, ptr: Value| {
        let pitch = ld(b, pitches, 8 * i);
        let tp = b.ins().imul(t, pitch);
        let row = b.ins().iadd(tp, c0);
        let row4 = b.ins().ishl_imm_u(row, 2);
        b.ins().iadd(ptr, row4)
    };
    let (ni, no) = (in_ptr.len(), out_ptr.len());
    let inputs = (in_ptr.iter().enumerate())
        .map(|(i, p)| row_of(&mut b, i, *p))
        .collect();
    let outputs = (out_ptr.iter().zip(&k.output_modes).enumerate())
        .map(|(o, (p, m))| (*m == OutputMode::Sequence).then(|| row_of(&mut b, ni + o, *p)))
        .collect();
    let seqs = (seq_ptr.iter().enumerate())
        .map(|(j, p)| row_of(&mut b, ni + no + j, *p))
        .collect();
    let t4 = b.ins().ishl_imm_u(t, 2);
    let rows = Rows {
        inputs,
        outputs,
        seqs,
        per_neuron: par_ptr
            .iter()
            .zip(g.params())
            .map(|(p, d)| (d.kind == ParamKind::PerNeuron).then(|| b.ins().iadd(*p, c0_4)))
            .collect(),
        states: state_bufs.clone(),
        sums: sum_bufs.clone(),
    };
    // Values computed once per step: per-time params and what depends only on them.
    let mut step_vals = call_vals;
    {
        let par_ptr = par_ptr.clone();
        let mut leaf = |b: &mut FunctionBuilder<'_>, _c: usize, op: &Op| match *op {
            Op::Param(k) => {
                let a = b.ins().iadd(par_ptr[k as usize], t4);
                load_splat(b, a, mem)
            }
            _ => unreachable!("only per-time params are per-step leaves"),
        };
        e.emit_uniform_level(&mut b, Level::Step, &mut step_vals, &mut leaf);
    }
    e.spill_uniforms(&mut b, Level::Step, &step_vals);

    // Neuron loops: 4*unroll lanes, then 4 lanes, then one neuron at a time.
    let mut start = zero;
    let mut widths = vec![unroll];
    if unroll > 1 {
        widths.push(1);
    }
    for u in widths {
        let label = format!("neuron loop: {} neurons per iteration ({u} x f32x4)", 4 * u);
        e.ann(&mut b, label.clone());
        start = Emitter::counted_loop(&mut b, start, clen4, 16 * u as i64, &mut |b, off| {
            e.ann(b, label.clone());
            e.body(b, Body::Vector(u), off, &rows, &step_vals);
            e.ann(b, label.clone());
        });
    }
    let label =
        "neuron tail: one neuron per iteration (splatted, bit-identical to the vector body)";
    e.ann(&mut b, label);
    Emitter::counted_loop(&mut b, start, clen4, 4, &mut |b, off| {
        e.ann(b, label);
        e.body(b, Body::Tail, off, &rows, &step_vals);
        e.ann(b, label);
    });
    e.ann(&mut b, "time loop: next step");
    let s1 = b.ins().iadd_imm_s(s, 1);
    b.ins().jump(step_hdr, &[BlockArg::Value(s1)]);

    b.switch_to_block(chunk_end);
    e.ann(
        &mut b,
        "chunk: write final states and sums from the stack buffer",
    );
    e.copy_states(&mut b, slot, fin_arr, c0_4, clen4, StateCopy::Out);
    for (o, sb) in sum_bufs.iter().enumerate() {
        if let Some(sb) = sb {
            let dst = b.ins().iadd(out_ptr[o], c0_4);
            e.copy(&mut b, dst, Some(*sb), clen4);
        }
    }
    let next = b.ins().iadd(c0, cmax);
    b.ins().jump(chunk_hdr, &[BlockArg::Value(next)]);

    b.switch_to_block(exit);
    e.ann(&mut b, "return");
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(opts.frontend);
    let annotations = e.annotations;
    Ok(ClifScan {
        func,
        annotations,
        chunk,
        unroll,
        scratch_bytes: if on_stack { 0 } else { area_bytes },
    })
}
