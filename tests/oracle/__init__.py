"""Independent test oracle for crm-kpi, written from the specification only."""
