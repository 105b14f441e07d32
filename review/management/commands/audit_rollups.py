"""Bring the audit's daily rollups up to date, or rebuild them from the ledger."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from review import rollups


class Command(BaseCommand):
    help = (
        "Sum every settled day not yet in the audit's daily rollups (celery beat does this "
        "periodically). --rebuild drops them and sums the whole ledger again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="Start over: after importing or correcting ledger rows by hand.",
        )

    def handle(self, *args, rebuild: bool = False, **options) -> None:
        summary = rollups.refresh(rebuild=rebuild)
        self.stdout.write(
            f"{summary['days']} day(s) summed into {summary['rows']} rollup row(s); "
            f"settled days are read from rollups through {summary['through']}."
        )
