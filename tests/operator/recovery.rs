//! Recovery from AWS answers that hide what happened: a call that took effect but
//! whose answer was an error.
