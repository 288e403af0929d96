"""crm-kpi: streaming CRM KPI engine."""
