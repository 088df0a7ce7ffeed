#!/usr/bin/env node
// Validates FHIR R4 bundles with the npm package `fhir` (FHIR.js): structure, cardinality, data
// types, required value sets, and no unexpected properties. Messages of severity "error" fail.
//
//     node tests/fhir/validate.js FILE...
'use strict';
const fs = require('fs');
const { Fhir } = require('fhir');

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('no files to validate');
  process.exit(2);
}
const fhir = new Fhir();
let passed = 0;
let failed = 0;
for (const f of files) {
  const bundle = JSON.parse(fs.readFileSync(f, 'utf8'));
  const result = fhir.validate(bundle, { errorOnUnexpected: true });
  const errors = result.messages.filter((m) => m.severity === 'error');
  if (result.valid && errors.length === 0) {
    passed += 1;
  } else {
    failed += 1;
    console.log(`FAIL ${f}:`);
    for (const m of errors.slice(0, 20)) console.log(`  ${m.location}: ${m.message}`);
  }
}
console.log(`fhir (npm) validator: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
