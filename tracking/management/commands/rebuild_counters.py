"""Recompute budget spend counters and hourly rollups from the raw usage records; print the drift.

    python manage.py rebuild_counters           # repair, printing what was wrong
    python manage.py rebuild_counters --check   # report only; exit code 1 if anything drifted
"""

import sys

from django.core.management.base import BaseCommand

from tracking.rebuild import ledger_rebuild


class Command(BaseCommand):
    help = "Recompute spend counters and hourly rollups from usage records and report the drift."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Report the drift without writing; exit 1 if any.")

    def handle(self, *args, check=False, **options):
        report = ledger_rebuild(write=not check)
        out = self.stdout
        out.write(f"Counters: {report.counters_checked} checked, {len(report.counter_drift)} drifted.")
        for drift in report.counter_drift:
            (s_spent, s_calls, s_held), (a_spent, a_calls, a_held) = drift.stored, drift.actual
            out.write(f"  budget #{drift.budget.pk} {drift.budget.name!r} {drift.period_key}: "
                      f"spent {s_spent} -> {a_spent} (drift {a_spent - s_spent:+}), calls {s_calls} -> {a_calls}, "
                      f"reserved {s_held} -> {a_held}")
        stored, actual = report.rollup_totals_stored, report.rollup_totals_actual
        out.write(f"Rollups: {report.rollups_stored} stored rows, {report.rollups_actual} from records, "
                  f"{report.rollups_drifted} drifted.")
        out.write(f"  totals stored: {stored['calls']} calls, ${stored['cost_usd']}, {stored['total_tokens']} tokens")
        out.write(f"  totals actual: {actual['calls']} calls, ${actual['cost_usd']}, {actual['total_tokens']} tokens")
        if not report.has_drift:
            out.write(self.style.SUCCESS("No drift: counters and rollups equal the records."))
        elif check:
            out.write(self.style.WARNING("Drift found (not repaired: --check)."))
            sys.exit(1)
        else:
            out.write(self.style.SUCCESS("Drift repaired."))
