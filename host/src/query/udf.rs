//! Presto-style functions DataFusion lacks: `year`, `month`, `day`, `hour`
//! (of a timestamp or date, as integers), so the classic stack's queries run
//! as written.

use datafusion::arrow::compute::kernels::temporal::{DatePart, date_part};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// `part` of a date or timestamp; `name` identifies it (for equality and hashing).
#[derive(Debug)]
struct Part {
    name: &'static str,
    part: DatePart,
    signature: Signature,
}

impl PartialEq for Part {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Part {}

impl std::hash::Hash for Part {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Part {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array(date_part(&arrays[0], self.part)?))
    }
}

/// Registers the functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    for (name, part) in [
        ("year", DatePart::Year),
        ("month", DatePart::Month),
        ("day", DatePart::Day),
        ("hour", DatePart::Hour),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Part {
            name,
            part,
            signature: Signature::any(1, Volatility::Immutable),
        }));
    }
}
