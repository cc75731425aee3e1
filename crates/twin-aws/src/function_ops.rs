//! owned by the L4/L5 engineer: `lambda_update`, `lambda_logs`, `lambda_invoke` on AWS
//! (`AwsFunctionOps`, an implementation of `twin_engine::FunctionOps`).
// owned by the L4/L5 engineer
