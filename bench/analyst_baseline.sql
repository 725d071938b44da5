-- Baseline (b) of bench/pipeline_bench.py: the indicators as a skilled analyst would compute
-- them in one DuckDB script straight from the delivery files, with no ingestion checks,
-- no quarantine, no tokens, no history kept, no quality gate. {src:<extract>} expands to
-- every file of the extract (CSV and Parquet) with its file name.
create table p as
select * from {src:participants}
where effective_date <= date '2024-12-31'
qualify row_number() over (partition by kpj order by effective_date desc, filename desc) = 1;

create table e as
select * from {src:employers}
where effective_date <= date '2024-12-31'
qualify row_number() over (partition by npp order by effective_date desc, filename desc) = 1;

create table c as
select * from {src:claims}
qualify row_number() over (partition by claim_id order by claim_version desc, filename desc) = 1;

create table b as
select *, cast(strptime(period_month || '-15', '%Y-%m-%d') + interval 1 month as date) as due
from {src:contributions}
qualify row_number() over (partition by npp, period_month order by filename desc) = 1;

create table r as select * from {src:regions};
create table w as select * from {src:workforce} where year = 2024;
create table mw as select * from {src:minimum_wages} where year = 2024;
create table pa as select * from {src:pemda_assessment} where year = 2024;

create table employers_scored as
with pu as (
    select p.npp, count(*) as n,
           count(*) filter (where p.monthly_wage_idr >= coalesce(k.minimum_wage_idr, u.minimum_wage_idr)) as at_min,
           count(*) filter (where jkk = 1 and jkm = 1 and (e.size_class = 'MIKRO' or jht = 1)
                              and (jp = 1 or e.size_class in ('KECIL', 'MIKRO'))) as progs
    from p join e using (npp)
    left join mw k on k.region_code = p.region_code
    left join mw u on u.region_code = left(p.region_code, 2)
    where p.status = 'ACTIVE' and p.segment = 'PU'
    group by p.npp),
anyseg as (
    select npp, count(*) as n_any, avg((jkk + jkm + jht) / 3) as breadth
    from p where status = 'ACTIVE' and npp is not null group by npp),
csr as (select funder_code as npp, count(*) as n_csr from p where status = 'ACTIVE' and funding = 'CSR' group by 1),
bills as (
    select npp,
           count(*) filter (where left(period_month, 4) = '2024' and due <= date '2024-12-31') as nb,
           count(*) filter (where left(period_month, 4) = '2024' and due <= date '2024-12-31' and paid_date <= due) as ontime,
           count(*) filter (where left(period_month, 4) = '2024' and due <= date '2024-12-31'
                              and paid_date <= date '2024-12-31') as paid,
           count(*) filter (where due <= date '2024-12-31' and (paid_date is null or paid_date > date '2024-12-31')) as arrears
    from b group by npp)
select e.npp, e.size_class, e.region_code, e.status, e.reported_workforce,
       coalesce(pu.n, 0) as n, coalesce(anyseg.n_any, 0) as n_any,
       least(pu.n / nullif(e.reported_workforce, 0), 1) as b1,
       coalesce(pu.at_min / pu.n, 0) as b2, coalesce(pu.progs / pu.n, 0) as b3,
       bills.ontime / nullif(bills.nb, 0) as b4, csr.n_csr / nullif(e.reported_workforce, 0) as b5,
       bills.paid / nullif(bills.nb, 0) as u2, anyseg.breadth as u3, coalesce(bills.nb, 0) as nb,
       coalesce(bills.arrears, 0) as arrears,
       (e.status = 'ACTIVE' and coalesce(bills.arrears, 0) = 0 and coalesce(pu.n, 0) >= e.reported_workforce
        and coalesce(pu.at_min, 0) = coalesce(pu.n, -1) and coalesce(pu.progs, 0) = coalesce(pu.n, -1)) as compliant,
       100 * (0.3 * least(coalesce(b1, 0), 1) + 0.2 * b2 + 0.2 * b3 + 0.2 * coalesce(b4, 0)
              + 0.1 * least(coalesce(b5, 0) / 0.05, 1)) as total,
       row_number() over (partition by e.size_class order by total desc, b1 desc, e.npp) as rank_national
from e
left join pu using (npp) left join anyseg using (npp) left join csr using (npp) left join bills using (npp);

create table pemda as
with kab as (
    select region_code, count(*) as act, count(*) filter (where segment = 'BPU') as bpu
    from p where status = 'ACTIVE' group by 1),
claims as (
    select region_code, count(*) as n, sum(amount_idr) as idr,
           count(*) filter (where benefit_type = 'SCHOLARSHIP') as children
    from c where status = 'PAID' and paid_date between date '2024-01-01' and date '2024-12-31' group by 1),
emp as (
    select region_code, count(*) filter (where status = 'ACTIVE' and nb > 0) as assessed,
           count(*) filter (where status = 'ACTIVE' and nb > 0 and compliant) as ok
    from employers_scored group by 1),
funded as (
    select funder_code as code,
           count(*) filter (where occupation in ('GURU_HONORER', 'PERANGKAT_DESA', 'RT_RW', 'NON_ASN_LAIN')) as non_asn,
           count(*) filter (where funding = 'APBD'
                              and occupation not in ('GURU_HONORER', 'PERANGKAT_DESA', 'RT_RW', 'NON_ASN_LAIN')) as apbd
    from p where status = 'ACTIVE' and funding in ('APBD', 'APBDES') group by 1),
measures as (
    select r.region_code, coalesce(kab.act, 0) as act, coalesce(kab.bpu, 0) as bpu, coalesce(claims.n, 0) as claims,
           coalesce(claims.idr, 0) as idr, coalesce(claims.children, 0) as children,
           coalesce(emp.assessed, 0) as assessed, coalesce(emp.ok, 0) as ok
    from r left join kab using (region_code) left join claims using (region_code) left join emp using (region_code)
    where r.level <> 'PROVINSI'),
territory as (
    select region_code as code, act, bpu, claims, idr, children, assessed, ok from measures
    union all
    select left(region_code, 2), sum(act), sum(bpu), sum(claims), sum(idr), sum(children), sum(assessed), sum(ok)
    from measures group by 1),
scored as (
    select r.region_code, r.level, t.*, t.act / w.employed as p1, t.bpu / w.informal_employed as p2,
           case when pa.non_asn_headcount > 0 then least(coalesce(f.non_asn, 0) / pa.non_asn_headcount, 1)
                when coalesce(f.non_asn, 0) = 0 then 0 else 1 end as p3,
           coalesce(f.apbd, 0) / w.informal_employed as p4, pa.has_regulation as p5,
           coalesce(t.ok / nullif(t.assessed, 0), 1) as p6, pa.innovation_score / 100 as p7
    from r join territory t on t.code = r.region_code
    left join w using (region_code) left join pa using (region_code) left join funded f on f.code = r.region_code)
select *, (25 * least(p1 / 0.5, 1) + 20 * least(p2 / 0.3, 1) + 10 * p3 + 10 * least(p4 / 0.1, 1) + 10 * p5
           + 15 * p6 + 10 * p7) as total,
       row_number() over (partition by level = 'PROVINSI' order by total desc, p1 desc, region_code) as rank_national
from scored;
