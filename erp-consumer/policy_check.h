/*
 * policy_check.h — `erp-consumer policy-check`: validate a tier policy and
 * preview its impact before anyone deploys it (change control).
 *
 *   erp-consumer policy-check --policy NEW.yaml [--against CURRENT.yaml]
 *                             [--sample movements.jsonl] [--json]
 *
 * Loads NEW (every error names file, line and key). With a sample (JSON
 * lines or a JSON array of movements, e.g. a day of `mes-sim gen` traffic or
 * an export of real ones) it classifies every movement with NEW — and with
 * CURRENT when given — and reports how many go to each tier and how many
 * move from which tier to which. Exit 0 valid, 2 invalid policy or sample.
 */
#ifndef INVSYNC_POLICY_CHECK_H
#define INVSYNC_POLICY_CHECK_H

int policy_check_main(int argc, char **argv);

#endif
