//! The workflow language's expressions: what a `require` guard tests, what an update writes,
//! what a published event carries, what an invariant asserts.
//!
//! ```text
//! or      := and (("||" | "or") and)*
//! and     := cmp (("&&" | "and") cmp)*
//! cmp     := add (("==" | "!=" | "<" | "<=" | ">" | ">=") add)?
//! add     := mul (("+" | "-") mul)*
//! mul     := unary (("*" | "/" | "%") unary)*
//! unary   := ("!" | "not" | "-") unary | primary
//! primary := INT | STRING | "true" | "false" | path | IDENT "(" (or ("," or)*)? ")" | "(" or ")"
//! path    := IDENT ("." IDENT)*
//! ```
//!
//! Integers are `i64` (`_` separates digits, as in TOML); strings are quoted with `'` or `"`;
//! a string compared with an enum field names one of its values (`order.status == 'PENDING'`).
//! A path names something the surrounding step can see (`request.qty`, `product.stock`,
//! `event.order_id`, `params.users`): the [`Scope`] resolves it once, at compile time, to a slot
//! of the frame the expression is evaluated against. Functions: `min(a, b)`, `max(a, b)`,
//! `abs(a)`. Comparisons do not chain (`a < b < c` is an error, as in Rust).
//!
//! Everything is checked before a run starts: an unknown name, a type error, an unknown enum
//! value or function is an [`ExprError`] at a byte offset of the expression's text, which the
//! workflow compiler turns into the file's line and column. At run time, integer overflow and
//! division by zero are the only errors ([`EvalError`]); Java's `long` would wrap silently,
//! evsim stops the run instead, so no input silently produces a wrong run.

use std::fmt;

/// A value's type.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Type {
    Int,
    Bool,
    Str,
    /// One of the workflow's enum types (an index the [`Scope`] gives meaning to).
    Enum(u16),
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Int => f.write_str("an integer"),
            Type::Bool => f.write_str("a boolean"),
            Type::Str => f.write_str("a string"),
            Type::Enum(_) => f.write_str("an enum value"),
        }
    }
}

/// A value at run time. `Copy`: a frame, a row or an event's fields are plain memory, copied
/// and freed without walking them (a string is one the workflow wrote, interned).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Int(i64),
    Bool(bool),
    /// A string from the workflow's text or its parameters ([`intern`]): strings are never
    /// built at run time, so their number is bounded by the workflow files read.
    Str(&'static str),
    /// The index of a value of an enum type.
    Enum(u16),
}

/// The one copy of `s` for the process's lifetime: a workflow's strings are its constants, kept
/// as long as a run can use them. Each distinct string is kept once, however many workflows (a
/// sweep's points, a test suite) are compiled, so what this holds is bounded by the distinct
/// strings in the workflow files read, which the scenario limits bound.
pub fn intern(s: &str) -> &'static str {
    static STRINGS: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut strings = STRINGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&kept) = strings.get(s) {
        return kept;
    }
    let kept: &'static str = Box::leak(s.into());
    strings.insert(kept);
    kept
}

impl Value {
    /// The string value `s`.
    pub fn str(s: &str) -> Self {
        Value::Str(intern(s))
    }

    #[inline]
    pub fn as_int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            Value::Enum(v) => i64::from(*v),
            Value::Bool(b) => i64::from(*b),
            Value::Str(_) => 0,
        }
    }

    #[inline]
    pub fn as_bool(&self) -> bool {
        matches!(self, Value::Bool(true))
    }
}

/// A compile-time error: where in the expression's text (a byte offset) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl ExprError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        Self { offset, message: message.into() }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.message)
    }
}

/// A run-time error: the arithmetic left `i64`, or divided by zero.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EvalError {
    Overflow,
    DivisionByZero,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Overflow => f.write_str("integer overflow (the result is outside -2^63..2^63)"),
            EvalError::DivisionByZero => f.write_str("division by zero"),
        }
    }
}

/// What an expression can name: the compiler asks it once per path and per enum literal.
pub trait Scope {
    /// What `path` (`["product", "stock"]`) names, or why it names nothing here (the message
    /// says what could be named instead).
    fn resolve(&self, path: &[&str]) -> Result<Resolved, String>;
    /// The index of `name` among the values of enum type `ty`, if it is one of them.
    fn enum_value(&self, ty: u16, name: &str) -> Option<u16>;
    /// The values of enum type `ty`, for error messages.
    fn enum_values(&self, ty: u16) -> Vec<String>;
}

/// What a name stands for: a slot of the frame, or a constant known before the run (a
/// workflow parameter).
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    Slot(u16, Type),
    Const(Value),
}

impl Value {
    /// The value's type (an enum value's enum is not known from the value alone).
    pub fn type_of(&self, enum_ty: u16) -> Type {
        match self {
            Value::Int(_) => Type::Int,
            Value::Bool(_) => Type::Bool,
            Value::Str(_) => Type::Str,
            Value::Enum(_) => Type::Enum(enum_ty),
        }
    }
}

/// A binary operator.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

/// The parsed form, before names are resolved: what [`parse`] returns (the workload's
/// distributions, `uniform(1, params.quantity_max)`, are read from it too).
#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    Int(i64, usize),
    Str(String, usize),
    Bool(bool, usize),
    Path(Vec<String>, usize),
    Call(String, Vec<Ast>, usize),
    Neg(Box<Ast>, usize),
    Not(Box<Ast>, usize),
    Bin(BinOp, Box<Ast>, Box<Ast>, usize),
}

impl Ast {
    /// The byte offset this node starts at (for a binary operation: its operator).
    pub fn offset(&self) -> usize {
        match self {
            Ast::Int(_, o)
            | Ast::Str(_, o)
            | Ast::Bool(_, o)
            | Ast::Path(_, o)
            | Ast::Call(_, _, o)
            | Ast::Neg(_, o)
            | Ast::Not(_, o)
            | Ast::Bin(_, _, _, o) => *o,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// Unsigned: `-9223372036854775808` is a `-` and 2^63, which only a negation may hold.
    Int(u64),
    Str(String),
    Ident(String),
    Sym(&'static str),
    End,
}

const SYMBOLS: [&str; 19] =
    ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "!", "(", ")", ",", ".", "="];

/// The most nested parentheses and unary operators an expression may have (the parser recurses).
pub const MAX_DEPTH: usize = 64;
/// The most operators and values an expression may have.
pub const MAX_NODES: usize = 256;
/// The longest expression text accepted.
pub const MAX_LEN: usize = 4_096;

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    if src.len() > MAX_LEN {
        return Err(ExprError::new(MAX_LEN, format!("an expression of at most {MAX_LEN} bytes")));
    }
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                i += 1;
            }
            if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'.') {
                return Err(ExprError::new(i, "an integer (digits and `_`; no fractions or suffixes)"));
            }
            let digits: String = src[start..i].chars().filter(|&c| c != '_').collect();
            let v = digits
                .parse::<u64>()
                .ok()
                .filter(|&v| v <= 1 << 63)
                .ok_or_else(|| ExprError::new(start, "an integer between -2^63 and 2^63 - 1"))?;
            out.push((Tok::Int(v), start));
        } else if c == b'\'' || c == b'"' {
            let start = i;
            let close = src[i + 1..]
                .find(c as char)
                .ok_or_else(|| ExprError::new(start, format!("a string closed with {}", c as char)))?;
            out.push((Tok::Str(src[i + 1..i + 1 + close].to_string()), start));
            i += close + 2;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_string()), start));
        } else if let Some(sym) = SYMBOLS.iter().find(|s| src[i..].starts_with(**s)) {
            if *sym == "=" {
                return Err(ExprError::new(i, "`==` to compare (a single `=` assigns nothing here)"));
            }
            out.push((Tok::Sym(sym), i));
            i += sym.len();
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(ExprError::new(i, format!("a name, a number, a quoted string or an operator, not `{ch}`")));
        }
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
    nodes: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn offset(&self) -> usize {
        self.toks[self.at].1
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Tok::Sym(x) if *x == s) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Tok::Ident(x) if x == w) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            Tok::Int(i) => format!("`{i}`"),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Sym(s) => format!("`{s}`"),
            Tok::End => "the end".to_string(),
        }
    }

    /// Count one more node of the tree (compiling and evaluating recurse over it).
    fn node(&mut self, a: Ast) -> Result<Ast, ExprError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(ExprError::new(a.offset(), format!("at most {MAX_NODES} operators and values")));
        }
        Ok(a)
    }

    fn deeper(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(self.offset(), format!("at most {MAX_DEPTH} nested operators")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        self.logic(BinOp::Or, "||", "or", Self::and)
    }

    fn and(&mut self) -> Result<Ast, ExprError> {
        self.logic(BinOp::And, "&&", "and", Self::cmp)
    }

    /// `next ((sym | word) next)*`, left-associative.
    fn logic(
        &mut self,
        op: BinOp,
        sym: &str,
        word: &str,
        next: fn(&mut Self) -> Result<Ast, ExprError>,
    ) -> Result<Ast, ExprError> {
        let mut l = next(self)?;
        loop {
            let at = self.offset();
            if !(self.eat_sym(sym) || self.eat_word(word)) {
                return Ok(l);
            }
            let r = next(self)?;
            l = self.node(Ast::Bin(op, Box::new(l), Box::new(r), at))?;
        }
    }

    fn cmp_op(&self) -> Option<BinOp> {
        match self.peek() {
            Tok::Sym("==") => Some(BinOp::Eq),
            Tok::Sym("!=") => Some(BinOp::Ne),
            Tok::Sym("<") => Some(BinOp::Lt),
            Tok::Sym("<=") => Some(BinOp::Le),
            Tok::Sym(">") => Some(BinOp::Gt),
            Tok::Sym(">=") => Some(BinOp::Ge),
            _ => None,
        }
    }

    fn cmp(&mut self) -> Result<Ast, ExprError> {
        let l = self.add()?;
        let Some(op) = self.cmp_op() else { return Ok(l) };
        let at = self.offset();
        self.at += 1;
        let r = self.add()?;
        if self.cmp_op().is_some() {
            return Err(ExprError::new(
                self.offset(),
                "`&&` between two comparisons (comparisons do not chain: `a < b && b < c`)",
            ));
        }
        Ok(Ast::Bin(op, Box::new(l), Box::new(r), at))
    }

    fn add(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.mul()?;
        loop {
            let at = self.offset();
            let op = if self.eat_sym("+") {
                BinOp::Add
            } else if self.eat_sym("-") {
                BinOp::Sub
            } else {
                return Ok(l);
            };
            let r = self.mul()?;
            l = self.node(Ast::Bin(op, Box::new(l), Box::new(r), at))?;
        }
    }

    fn mul(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.unary()?;
        loop {
            let at = self.offset();
            let op = if self.eat_sym("*") {
                BinOp::Mul
            } else if self.eat_sym("/") {
                BinOp::Div
            } else if self.eat_sym("%") {
                BinOp::Rem
            } else {
                return Ok(l);
            };
            let r = self.unary()?;
            l = self.node(Ast::Bin(op, Box::new(l), Box::new(r), at))?;
        }
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        let at = self.offset();
        if self.eat_sym("!") || self.eat_word("not") {
            self.deeper()?;
            let e = self.unary()?;
            self.depth -= 1;
            return self.node(Ast::Not(Box::new(e), at));
        }
        if self.eat_sym("-") {
            self.deeper()?;
            // `-9223372036854775808` is a literal, not the negation of one that overflows.
            if let Tok::Int(v) = *self.peek() {
                self.at += 1;
                self.depth -= 1;
                return self.node(Ast::Int((-i128::from(v)) as i64, at));
            }
            let e = self.unary()?;
            self.depth -= 1;
            return self.node(Ast::Neg(Box::new(e), at));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let at = self.offset();
        match self.peek().clone() {
            Tok::Int(v) => {
                let v = i64::try_from(v).map_err(|_| ExprError::new(at, "an integer between -2^63 and 2^63 - 1"))?;
                self.at += 1;
                self.node(Ast::Int(v, at))
            }
            Tok::Str(s) => {
                self.at += 1;
                self.node(Ast::Str(s, at))
            }
            Tok::Ident(w) if w == "true" || w == "false" => {
                self.at += 1;
                self.node(Ast::Bool(w == "true", at))
            }
            Tok::Ident(w) => {
                self.at += 1;
                if self.eat_sym("(") {
                    self.deeper()?;
                    let mut args = Vec::new();
                    if !self.eat_sym(")") {
                        loop {
                            args.push(self.or()?);
                            if self.eat_sym(")") {
                                break;
                            }
                            if !self.eat_sym(",") {
                                return Err(ExprError::new(
                                    self.offset(),
                                    format!("`,` or `)` in the call of {w}, found {}", self.found()),
                                ));
                            }
                        }
                    }
                    self.depth -= 1;
                    return self.node(Ast::Call(w, args, at));
                }
                let mut path = vec![w];
                while self.eat_sym(".") {
                    match self.peek().clone() {
                        Tok::Ident(n) => {
                            self.at += 1;
                            path.push(n);
                        }
                        _ => {
                            return Err(ExprError::new(
                                self.offset(),
                                format!("a field name after `.`, found {}", self.found()),
                            ));
                        }
                    }
                }
                self.node(Ast::Path(path, at))
            }
            Tok::Sym("(") => {
                self.at += 1;
                self.deeper()?;
                let e = self.or()?;
                self.depth -= 1;
                if !self.eat_sym(")") {
                    return Err(ExprError::new(self.offset(), format!("`)`, found {}", self.found())));
                }
                Ok(e)
            }
            _ => Err(ExprError::new(
                at,
                format!("a value (a number, a quoted string, a name or `(`), found {}", self.found()),
            )),
        }
    }
}

/// Parse `src` without resolving any name.
pub fn parse(src: &str) -> Result<Ast, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, at: 0, depth: 0, nodes: 0 };
    if matches!(p.peek(), Tok::End) {
        return Err(ExprError::new(0, "an expression, found nothing"));
    }
    let e = p.or()?;
    if !matches!(p.peek(), Tok::End) {
        return Err(ExprError::new(p.offset(), format!("an operator or the end, found {}", p.found())));
    }
    Ok(e)
}

/// A compiled expression: names resolved to frame slots, enum literals to their index, types
/// checked. Evaluate it with [`Expr::eval`].
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Const(Value),
    Slot(u16),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Min(Box<Expr>, Box<Expr>),
    Max(Box<Expr>, Box<Expr>),
    Abs(Box<Expr>),
}

/// Compile `src` against `scope`; `want` is the type the context needs (a guard needs a
/// boolean, a quantity an integer), if it needs one.
pub fn compile(src: &str, scope: &dyn Scope, want: Option<Type>) -> Result<(Expr, Type), ExprError> {
    let ast = parse(src)?;
    let (e, t) = check(&ast, scope)?;
    if let Some(w) = want
        && w != t
        && !(matches!(w, Type::Enum(_)) && t == Type::Str)
    {
        return Err(ExprError::new(0, format!("{w} here, but this expression is {t}")));
    }
    if let (Some(Type::Enum(ty)), Type::Str) = (want, t) {
        let Expr::Const(Value::Str(s)) = &e else {
            return Err(ExprError::new(0, "a quoted value of the enum here"));
        };
        return enum_literal(scope, ty, s, 0).map(|v| (Expr::Const(v), Type::Enum(ty)));
    }
    Ok((e, t))
}

fn enum_literal(scope: &dyn Scope, ty: u16, name: &str, at: usize) -> Result<Value, ExprError> {
    scope.enum_value(ty, name).map(Value::Enum).ok_or_else(|| {
        ExprError::new(at, format!("one of {} (this enum's values), not '{name}'", scope.enum_values(ty).join(", ")))
    })
}

fn check(ast: &Ast, scope: &dyn Scope) -> Result<(Expr, Type), ExprError> {
    let want = |e: &Ast, t: Type| -> Result<Expr, ExprError> {
        let (x, got) = check(e, scope)?;
        if got != t {
            return Err(ExprError::new(e.offset(), format!("{t} here, found {got}")));
        }
        Ok(x)
    };
    Ok(match ast {
        Ast::Int(v, _) => (Expr::Const(Value::Int(*v)), Type::Int),
        Ast::Bool(b, _) => (Expr::Const(Value::Bool(*b)), Type::Bool),
        Ast::Str(s, _) => (Expr::Const(Value::str(s)), Type::Str),
        Ast::Path(path, at) => {
            let parts: Vec<&str> = path.iter().map(String::as_str).collect();
            match scope.resolve(&parts).map_err(|m| ExprError::new(*at, m))? {
                Resolved::Slot(slot, t) => (Expr::Slot(slot), t),
                Resolved::Const(v) => {
                    let t = v.type_of(0);
                    (Expr::Const(v), t)
                }
            }
        }
        Ast::Neg(e, _) => (Expr::Neg(Box::new(want(e, Type::Int)?)), Type::Int),
        Ast::Not(e, _) => (Expr::Not(Box::new(want(e, Type::Bool)?)), Type::Bool),
        Ast::Call(name, args, at) => {
            let arity = match name.as_str() {
                "min" | "max" => 2,
                "abs" => 1,
                _ => {
                    return Err(ExprError::new(*at, format!("a function of min, max, abs, not `{name}`")));
                }
            };
            if args.len() != arity {
                return Err(ExprError::new(*at, format!("{name} takes {arity} argument(s), found {}", args.len())));
            }
            let a = Box::new(want(&args[0], Type::Int)?);
            match name.as_str() {
                "abs" => (Expr::Abs(a), Type::Int),
                "min" => (Expr::Min(a, Box::new(want(&args[1], Type::Int)?)), Type::Int),
                _ => (Expr::Max(a, Box::new(want(&args[1], Type::Int)?)), Type::Int),
            }
        }
        Ast::Bin(op, l, r, at) => match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                (Expr::Bin(*op, Box::new(want(l, Type::Int)?), Box::new(want(r, Type::Int)?)), Type::Int)
            }
            BinOp::And | BinOp::Or => {
                (Expr::Bin(*op, Box::new(want(l, Type::Bool)?), Box::new(want(r, Type::Bool)?)), Type::Bool)
            }
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (mut a, ta) = check(l, scope)?;
                let (mut b, tb) = check(r, scope)?;
                // A string literal against an enum names one of its values.
                let ty = match (ta, tb) {
                    (Type::Enum(e), Type::Str) => {
                        b = Expr::Const(str_literal(&b, r, |s| enum_literal(scope, e, s, r.offset()))?);
                        Type::Enum(e)
                    }
                    (Type::Str, Type::Enum(e)) => {
                        a = Expr::Const(str_literal(&a, l, |s| enum_literal(scope, e, s, l.offset()))?);
                        Type::Enum(e)
                    }
                    (x, y) if x == y => x,
                    (x, y) => {
                        return Err(ExprError::new(
                            *at,
                            format!("both sides of `{}` of one type, found {x} and {y}", op.symbol()),
                        ));
                    }
                };
                let ordered = matches!(op, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge);
                if ordered && ty != Type::Int {
                    return Err(ExprError::new(
                        *at,
                        format!("integers on both sides of `{}`, found {ty}", op.symbol()),
                    ));
                }
                (Expr::Bin(*op, Box::new(a), Box::new(b)), Type::Bool)
            }
        },
    })
}

/// The text of a string literal compared with an enum, turned into the enum's value.
fn str_literal(e: &Expr, ast: &Ast, to_enum: impl Fn(&str) -> Result<Value, ExprError>) -> Result<Value, ExprError> {
    match e {
        Expr::Const(Value::Str(s)) => to_enum(s),
        _ => Err(ExprError::new(ast.offset(), "a quoted enum value to compare with an enum field")),
    }
}

impl Expr {
    /// Evaluate against `frame` (the slots the scope resolved names to).
    pub fn eval(&self, frame: &[Value]) -> Result<Value, EvalError> {
        Ok(match self {
            Expr::Const(v) => *v,
            Expr::Slot(s) => frame[*s as usize],
            Expr::Neg(e) => Value::Int(e.int(frame)?.checked_neg().ok_or(EvalError::Overflow)?),
            Expr::Not(e) => Value::Bool(!e.eval(frame)?.as_bool()),
            Expr::Abs(e) => Value::Int(e.int(frame)?.checked_abs().ok_or(EvalError::Overflow)?),
            Expr::Min(a, b) => Value::Int(a.int(frame)?.min(b.int(frame)?)),
            Expr::Max(a, b) => Value::Int(a.int(frame)?.max(b.int(frame)?)),
            Expr::Bin(op, a, b) => match op {
                BinOp::And => Value::Bool(a.eval(frame)?.as_bool() && b.eval(frame)?.as_bool()),
                BinOp::Or => Value::Bool(a.eval(frame)?.as_bool() || b.eval(frame)?.as_bool()),
                BinOp::Eq => Value::Bool(a.eval(frame)? == b.eval(frame)?),
                BinOp::Ne => Value::Bool(a.eval(frame)? != b.eval(frame)?),
                BinOp::Lt => Value::Bool(a.int(frame)? < b.int(frame)?),
                BinOp::Le => Value::Bool(a.int(frame)? <= b.int(frame)?),
                BinOp::Gt => Value::Bool(a.int(frame)? > b.int(frame)?),
                BinOp::Ge => Value::Bool(a.int(frame)? >= b.int(frame)?),
                BinOp::Add => Value::Int(a.int(frame)?.checked_add(b.int(frame)?).ok_or(EvalError::Overflow)?),
                BinOp::Sub => Value::Int(a.int(frame)?.checked_sub(b.int(frame)?).ok_or(EvalError::Overflow)?),
                BinOp::Mul => Value::Int(a.int(frame)?.checked_mul(b.int(frame)?).ok_or(EvalError::Overflow)?),
                BinOp::Div | BinOp::Rem => {
                    let (x, y) = (a.int(frame)?, b.int(frame)?);
                    if y == 0 {
                        return Err(EvalError::DivisionByZero);
                    }
                    // Java's `/` and `%`: truncating, the remainder takes the dividend's sign.
                    let r = if *op == BinOp::Div { x.checked_div(y) } else { x.checked_rem(y) };
                    Value::Int(r.ok_or(EvalError::Overflow)?)
                }
            },
        })
    }

    /// A condition's truth, without building the boolean values of its comparisons and
    /// connectives (a guard and an invariant are conditions, evaluated on every transaction).
    pub fn truth(&self, frame: &[Value]) -> Result<bool, EvalError> {
        match self {
            Expr::Not(e) => Ok(!e.truth(frame)?),
            Expr::Bin(op, a, b) => match op {
                BinOp::And => Ok(a.truth(frame)? && b.truth(frame)?),
                BinOp::Or => Ok(a.truth(frame)? || b.truth(frame)?),
                BinOp::Lt => Ok(a.int(frame)? < b.int(frame)?),
                BinOp::Le => Ok(a.int(frame)? <= b.int(frame)?),
                BinOp::Gt => Ok(a.int(frame)? > b.int(frame)?),
                BinOp::Ge => Ok(a.int(frame)? >= b.int(frame)?),
                _ => Ok(self.eval(frame)?.as_bool()),
            },
            _ => Ok(self.eval(frame)?.as_bool()),
        }
    }

    /// An integer operand: a slot or a constant read in place (no value built, cloned and
    /// dropped), anything else evaluated.
    #[inline]
    fn int(&self, frame: &[Value]) -> Result<i64, EvalError> {
        match self {
            Expr::Slot(s) => Ok(frame[*s as usize].as_int()),
            Expr::Const(v) => Ok(v.as_int()),
            _ => Ok(self.eval(frame)?.as_int()),
        }
    }

    /// Whether the expression reads the frame (a request's or event's field, a row, an
    /// answer); one that does not has the same value every time it runs.
    pub fn uses_frame(&self) -> bool {
        match self {
            Expr::Const(_) => false,
            Expr::Slot(_) => true,
            Expr::Neg(e) | Expr::Not(e) | Expr::Abs(e) => e.uses_frame(),
            Expr::Bin(_, a, b) | Expr::Min(a, b) | Expr::Max(a, b) => a.uses_frame() || b.uses_frame(),
        }
    }

    /// Whether the expression reads only the frame's first `n` slots (a handler's input).
    pub fn reads_only_below(&self, n: u16) -> bool {
        match self {
            Expr::Const(_) => true,
            Expr::Slot(s) => *s < n,
            Expr::Neg(e) | Expr::Not(e) | Expr::Abs(e) => e.reads_only_below(n),
            Expr::Bin(_, a, b) | Expr::Min(a, b) | Expr::Max(a, b) => a.reads_only_below(n) && b.reads_only_below(n),
        }
    }

    /// The value, if the expression needs no frame (a constant after compilation).
    pub fn constant(&self) -> Option<&Value> {
        match self {
            Expr::Const(v) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `product.stock` (slot 0, int), `request.qty` (slot 1, int), `order.status` (slot 2,
    /// enum 0 of PENDING, PAID, CANCELLED), `request.note` (slot 3, string), `ok` (slot 4, bool).
    struct Toy;

    const STATUS: [&str; 3] = ["PENDING", "PAID", "CANCELLED"];

    impl Scope for Toy {
        fn resolve(&self, path: &[&str]) -> Result<Resolved, String> {
            match path {
                ["product", "stock"] => Ok(Resolved::Slot(0, Type::Int)),
                ["request", "qty"] => Ok(Resolved::Slot(1, Type::Int)),
                ["order", "status"] => Ok(Resolved::Slot(2, Type::Enum(0))),
                ["request", "note"] => Ok(Resolved::Slot(3, Type::Str)),
                ["ok"] => Ok(Resolved::Slot(4, Type::Bool)),
                ["params", "ten"] => Ok(Resolved::Const(Value::Int(10))),
                _ => {
                    Err(format!("a name this step can see (product.stock, request.qty, ...), not `{}`", path.join(".")))
                }
            }
        }
        fn enum_value(&self, _ty: u16, name: &str) -> Option<u16> {
            STATUS.iter().position(|s| *s == name).map(|i| i as u16)
        }
        fn enum_values(&self, _ty: u16) -> Vec<String> {
            STATUS.iter().map(|s| s.to_string()).collect()
        }
    }

    fn frame() -> Vec<Value> {
        vec![Value::Int(5), Value::Int(3), Value::Enum(0), Value::str("hi"), Value::Bool(true)]
    }

    fn eval(src: &str) -> Result<Value, EvalError> {
        let (e, _) = compile(src, &Toy, None).unwrap_or_else(|e| panic!("{src}: {e}"));
        e.eval(&frame())
    }

    fn err(src: &str) -> ExprError {
        compile(src, &Toy, None).expect_err(src)
    }

    #[test]
    fn arithmetic_follows_precedence_and_java_division() {
        assert_eq!(eval("product.stock - request.qty * 2"), Ok(Value::Int(-1)));
        assert_eq!(eval("(product.stock - request.qty) * 2"), Ok(Value::Int(4)));
        assert_eq!(eval("-7 / 2"), Ok(Value::Int(-3)));
        assert_eq!(eval("-7 % 2"), Ok(Value::Int(-1)));
        assert_eq!(eval("1_000 + min(request.qty, 2) - max(1, abs(-4))"), Ok(Value::Int(998)));
        assert_eq!(eval("-9223372036854775808 < 0"), Ok(Value::Bool(true)));
        assert_eq!(compile("params.ten * 2", &Toy, None).map(|(_, t)| t), Ok(Type::Int));
        assert_eq!(eval("params.ten * 2"), Ok(Value::Int(20)));
    }

    #[test]
    fn guards_compare_and_combine() {
        assert_eq!(eval("product.stock >= request.qty && order.status == 'PENDING'"), Ok(Value::Bool(true)));
        assert_eq!(eval("product.stock < request.qty or not ok"), Ok(Value::Bool(false)));
        assert_eq!(eval("'PAID' != order.status"), Ok(Value::Bool(true)));
        assert_eq!(eval("request.note == \"hi\""), Ok(Value::Bool(true)));
        // A condition's truth, evaluated without building booleans, is its value's.
        for src in [
            "product.stock >= request.qty && order.status == 'PENDING'",
            "product.stock < request.qty or not ok",
            "not (product.stock > 4 and request.qty <= 2)",
            "product.stock - 5 >= 0 or request.qty / 0 > 1",
            "request.qty / (request.qty - 3) > 0",
        ] {
            let (e, _) = compile(src, &Toy, None).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(e.truth(&frame()), e.eval(&frame()).map(|v| v.as_bool()), "{src}");
        }
    }

    #[test]
    fn overflow_and_division_by_zero_stop_the_run() {
        assert_eq!(eval("9223372036854775807 + request.qty"), Err(EvalError::Overflow));
        assert_eq!(eval("product.stock / (request.qty - 3)"), Err(EvalError::DivisionByZero));
        assert_eq!(eval("abs(-9223372036854775808)"), Err(EvalError::Overflow));
    }

    #[test]
    fn errors_point_at_the_offending_character() {
        let e = err("product.stok >= 0");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("product.stock"), "{e}");
        let e = err("product.stock >= 'x'");
        assert_eq!(e.offset, 14);
        assert!(e.message.contains("one type"), "{e}");
        let e = err("order.status == 'SHIPPED'");
        assert_eq!(e.offset, 16);
        assert!(e.message.contains("PENDING, PAID, CANCELLED"), "{e}");
        assert_eq!(err("order.status < 'PAID'").offset, 13);
        assert_eq!(err("1 < 2 < 3").offset, 6);
        assert_eq!(err("product.stock = 1").offset, 14);
        assert_eq!(err("ok && 3").offset, 6);
        assert_eq!(err("sqrt(4)").offset, 0);
        assert_eq!(err("min(1)").offset, 0);
        assert_eq!(err("(1 + 2").offset, 6);
        assert_eq!(err("1 2").offset, 2);
        assert_eq!(err("'open").offset, 0);
        assert_eq!(err("3.5").offset, 1);
        assert_eq!(err("99999999999999999999").offset, 0);
        assert_eq!(err("").offset, 0);
        assert_eq!(err("a.").offset, 2);
        assert_eq!(err("#").offset, 0);
    }

    #[test]
    fn a_context_that_needs_a_type_gets_it() {
        assert!(compile("request.qty", &Toy, Some(Type::Bool)).is_err());
        assert_eq!(compile("'PAID'", &Toy, Some(Type::Enum(0))).map(|(e, _)| e), Ok(Expr::Const(Value::Enum(1))));
        assert!(compile("'LOST'", &Toy, Some(Type::Enum(0))).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}1{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert!(err(&deep).message.contains("nested"));
        let ok = format!("{}1{}", "(".repeat(MAX_DEPTH - 1), ")".repeat(MAX_DEPTH - 1));
        assert!(compile(&ok, &Toy, None).is_ok());
        assert!(err(&"-".repeat(MAX_DEPTH + 1)).message.contains("nested"));
        assert!(err(&"1+".repeat(MAX_LEN)).message.contains("at most"));
    }
}
